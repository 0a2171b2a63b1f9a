"""The seed's own snippet, with the official ``segmind`` SDK pointed at a real ``stillmotion serve``."""

from __future__ import annotations

import httpx
import pytest
from segmind import InferenceFailed, SegmindClient

from service_support import MODEL, Media, Server, payload

pytestmark = pytest.mark.timeout(180)


def test_seed_snippet_submit_async_wait_completes_with_a_downloadable_mp4(
    server: Server, key: str, media: Media
) -> None:
    client = SegmindClient(api_key=key, base_url=server.base_url + "/v1")
    job = client.submit_async(MODEL, **payload(media))
    assert job.request_id
    assert job.status_url.startswith(server.base_url) and job.response_url.startswith(server.base_url)

    result = job.wait(timeout=120, interval=0.5)

    assert result["status"] == "COMPLETED"
    metrics = result["metrics"]
    assert metrics["frames"] == 30 and metrics["width"] == 720 and metrics["height"] == 720
    assert metrics["seed"] == 42 and metrics["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert metrics["cost"] == pytest.approx(metrics["duration_s"], abs=1e-3)  # 720p: 1 credit per second
    assert metrics["queue_time_s"] >= 0 and metrics["inference_time_s"] > 0
    # The output URL works without any header, and serves byte ranges (RFC 7233).
    video = httpx.get(result["output"], timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    part = httpx.get(result["output"], headers={"Range": "bytes=4-7"}, timeout=30)
    assert part.status_code == 206 and part.content == b"ftyp"
    assert part.headers["content-range"] == f"bytes 4-7/{len(video.content)}"
    # A tampered signature is refused.
    assert httpx.get(result["output"].replace("signature=", "signature=x"), timeout=30).status_code == 403


def test_run_sync_answers_with_the_video(server: Server, key: str, media: Media) -> None:
    client = SegmindClient(api_key=key, base_url=server.base_url + "/v1", timeout=120)
    response = client.run_sync(MODEL, **payload(media, turbo=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"
    assert response.headers["x-request-id"]


def test_a_photo_without_a_face_fails_with_its_reason(server: Server, key: str, media: Media) -> None:
    client = SegmindClient(api_key=key, base_url=server.base_url + "/v1")
    job = client.submit_async(MODEL, **payload(media, image=media.url("noface.png")))
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=120, interval=0.5)
    assert "face" in (failed.value.detail or "")
    # FAILED is served as 422 on both GETs, with status and error.
    with server.client(key) as http:
        for url in (job.status_url, job.response_url):
            answer = http.get(url)
            assert answer.status_code == 422
            assert answer.json()["status"] == "FAILED" and answer.json()["error"] == failed.value.detail
