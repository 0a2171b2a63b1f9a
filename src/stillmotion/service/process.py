"""``stillmotion serve`` as a child process on loopback, started and stopped cleanly.

The API load benchmark and the tests run the real server this way — a subprocess with its own worker
processes, SQLite and engine — so how to start it, know it is ready and stop it is written once here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``stillmotion serve`` on 127.0.0.1; restartable on the same data directory."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    """Settings (``STILLMOTION_*``) on top of this process's environment."""
    port: int = field(default_factory=free_port)
    log_dir: Path | None = None
    """Where each start writes its output (a new file per start); ``None`` discards it."""
    args: tuple[str, ...] = ("--workers", "1")
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Self:
        """Start the server and return once it answers ``/healthz``; ``RuntimeError`` (with the end of
        its log) if it exits or does not answer within ``timeout`` seconds."""
        command = [sys.executable, "-m", "stillmotion", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]  # fmt: skip
        with contextlib.ExitStack() as stack:  # the child keeps its own copy of the log descriptor
            output: int | IO[bytes] = subprocess.DEVNULL
            if self.log_dir is not None:
                self.log_path = self.log_dir / f"serve-{self.port}-{time.time():.0f}.log"
                output = stack.enter_context(self.log_path.open("wb"))
            self.process = subprocess.Popen(
                command, env={**os.environ, **self.env}, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stillmotion serve exited at start: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"stillmotion serve did not answer within {timeout:g} s: {self.log()}")

    def log(self) -> str:
        """The end of the current start's output, when it is kept."""
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def stop(self) -> None:
        """SIGTERM (the server stops its workers), then SIGKILL if it has not exited in 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill_hard(self) -> None:
        """``kill -9`` of the server process alone (its workers must die with it)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
