"""Helpers of the service tests: a REAL ``stillmotion serve`` (a subprocess with its real worker
processes, real SQLite and the real engine), keys made with the real ``stillmotion keys`` CLI, loopback
HTTP servers for input media and webhooks. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx

MODEL = "p-video-animate"

# Settings of the shared test server: short leases and fast housekeeping so that recovery, sweeping and
# webhook retries happen within a test's patience.
FAST_SETTINGS = {
    "STILLMOTION_ALLOW_HOSTS": "127.0.0.1",
    "STILLMOTION_LEASE_S": "3",
    "STILLMOTION_HEARTBEAT_S": "0.25",
    "STILLMOTION_WORKER_POLL_S": "0.2",
    "STILLMOTION_SWEEP_INTERVAL_S": "0.5",
    "STILLMOTION_WEBHOOK_BACKOFF_S": "0.5",
    "STILLMOTION_WEBHOOK_POLL_S": "0.2",
    "STILLMOTION_UPLOAD_MAX_BYTES": str(4 * 1024 * 1024),
}


def first_frames(src: Path, out: Path, count: int) -> Path:
    """The first ``count`` frames of ``src``, re-encoded at its exact frame rate."""
    with av.open(str(src)) as source, av.open(str(out), "w") as target:
        stream_in = source.streams.video[0]
        rate = stream_in.average_rate
        stream = target.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        for index, frame in enumerate(source.decode(stream_in)):
            if index >= count:
                break
            frame.pts, frame.time_base = index, 1 / rate
            target.mux(stream.encode(frame))
        target.mux(stream.encode(None))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stillmotion", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    """One ``stillmotion serve`` process on loopback; restartable on the same data directory."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        self.log_path = self.data_dir.parent / f"serve-{self.port}-{time.time():.0f}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stillmotion",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--workers",
                "1",
            ],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill_hard(self) -> None:
        """``kill -9`` of the server process alone (its workers must die with it)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def create_key(self, *options: object, credits: float = 1000) -> str:
        done = cli(
            "keys", "create", "--data-dir", self.data_dir, "--name", "test", "--credits", credits, *options
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def client(self, key: str, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"x-api-key": key}, timeout=30, **kwargs)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass(frozen=True)
class Media:
    base_url: str
    folder: Path

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    url: str
    received: list[Received]
    statuses: list[int]
    """Answers to give, in order (the last one repeats)."""


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def status_of(client: httpx.Client, request_id: str) -> dict[str, Any]:
    return client.get(f"/v2/requests/{request_id}/status").json()


def payload(media: Media, **overrides: Any) -> dict[str, Any]:
    """The seed's payload, pointed at our loopback media."""
    body: dict[str, Any] = {
        "video": media.url("short.mp4"),
        "image": media.url("photo.png"),
        "resolution": "720p",
        "turbo": False,
        "save_audio": True,
        "ignore_audio": False,
        "target_fps": "original",
        "instruction_prompt": "",
        "seed": 42,
        "disable_safety_checker": False,
    }
    body.update(overrides)
    return body
