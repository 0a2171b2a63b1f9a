"""Absolute URLs honour the configured public base URL (a server behind a proxy), in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from stillmotion.samples import sample_image, sample_video
from stillmotion.service.app import create_app
from stillmotion.service.config import ServiceConfig

PUBLIC = "https://animate.example.com/api"


def test_urls_use_the_public_base_url(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(data_dir=tmp_path, public_base_url=PUBLIC + "/"))
    keys = app.state.services.keys
    _, key = keys.create("t", 100)

    async def exercise() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://internal:8000", headers={"x-api-key": key}
        ) as http:
            photo = await http.post(
                "/v2/uploads", content=sample_image().read_bytes(), headers={"content-type": "image/png"}
            )
            video = await http.post(
                "/v2/uploads", content=sample_video().read_bytes(), headers={"content-type": "video/mp4"}
            )
            assert photo.json()["url"].startswith(PUBLIC + "/v2/files/uploads/")
            # Our own upload URLs are recognised by their signature, whatever host they name.
            submitted = await http.post(
                "/v2/p-video-animate", json={"image": photo.json()["url"], "video": video.json()["url"]}
            )
            assert submitted.status_code == 200, submitted.text
            body = submitted.json()
            for name in ("status_url", "response_url", "cancel_url", "events_url"):
                assert body[name].startswith(f"{PUBLIC}/v2/requests/{body['request_id']}")
            assert submitted.headers["x-request-id"] == body["request_id"]
            assert submitted.headers["location"] == body["status_url"]

    asyncio.run(exercise())
    # The carphone clip lasts 4.004 s: that exact cost is held at submit (720p: 1 credit per second).
    assert keys.find(key).credits == pytest.approx(100 - 4.004)
