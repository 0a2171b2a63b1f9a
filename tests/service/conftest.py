"""Fixtures of the service tests (see ``service_support.py`` for what they are made of)."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from stillmotion.samples import sample_image, sample_video

from http_support import QuietHandler, serve_http
from service_support import (
    FAST_SETTINGS,
    Media,
    Received,
    Server,
    WebhookReceiver,
    first_frames,
)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server of most service tests."""
    srv = Server(tmp_path_factory.mktemp("service") / "data", dict(FAST_SETTINGS)).start()
    yield srv
    srv.stop()


@pytest.fixture
def key(server: Server) -> str:
    return server.create_key()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Media]:
    """Input files served over HTTP from 127.0.0.1 (allow-listed in the test server):
    ``photo.png`` (the astronaut), ``long.mp4`` (carphone, 4 s), ``short.mp4`` (its first second) and
    ``noface.png`` (a grey card with no face)."""
    folder = tmp_path_factory.mktemp("media")
    (folder / "photo.png").write_bytes(sample_image().read_bytes())
    (folder / "long.mp4").write_bytes(sample_video().read_bytes())
    first_frames(sample_video(), folder / "short.mp4", 30)
    grey = np.full((256, 256, 3), 128, np.uint8)
    cv2.rectangle(grey, (60, 60), (190, 190), (90, 120, 160), -1)
    cv2.imwrite(str(folder / "noface.png"), grey)

    def handler(*args: Any, **kwargs: Any) -> QuietHandler:
        return QuietHandler(*args, directory=str(folder), **kwargs)

    with serve_http(handler) as base_url:
        yield Media(base_url, folder)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    received: list[Received] = []
    statuses: list[int] = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            status = statuses[min(len(received) - 1, len(statuses) - 1)]
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_http(Handler) as base_url:
        yield WebhookReceiver(base_url + "/hook", received, statuses)
