"""Helpers of the service tests: a REAL ``stillmotion serve`` (a subprocess with its real worker
processes, real SQLite and the real engine), keys made with the real ``stillmotion keys`` CLI, loopback
HTTP servers for input media and webhooks. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx

from stillmotion.service.process import ServerProcess

from cli_support import run_cli

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


@dataclass
class Server(ServerProcess):
    """The real server with the tests' conveniences: keys made with the real CLI, API clients. Each
    start logs next to the data directory."""

    def __post_init__(self) -> None:
        if self.log_dir is None:
            self.log_dir = self.data_dir.parent

    def create_key(self, *options: object, credits: float = 1000) -> str:
        done = run_cli(
            "keys", "create", "--data-dir", self.data_dir, "--name", "test", "--credits", credits, *options
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def client(self, key: str, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"x-api-key": key}, timeout=30, **kwargs)


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
