"""A ``kill -9`` of the server mid-render loses nothing; finished requests expire; uploads are inputs.

This server has no allow-listed host: inputs come through ``POST /v2/uploads`` and are read from local
storage by the worker, never fetched back over loopback (which the SSRF guard refuses).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from service_support import FAST_SETTINGS, MODEL, Media, Server, status_of, wait_for

pytestmark = pytest.mark.timeout(240)

RETENTION_S = 6


@pytest.fixture
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {k: v for k, v in FAST_SETTINGS.items() if k != "STILLMOTION_ALLOW_HOSTS"}
    env["STILLMOTION_RETENTION_S"] = str(RETENTION_S)
    srv = Server(tmp_path_factory.mktemp("restart") / "data", env).start()
    yield srv
    srv.stop()


def upload(http: httpx.Client, media: Media, name: str, content_type: str) -> str:
    answer = http.post(
        "/v2/uploads", content=(media.folder / name).read_bytes(), headers={"content-type": content_type}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["url"])


def test_kill_9_mid_render_then_restart_completes_every_job(restartable: Server, media: Media) -> None:
    key = restartable.create_key()
    with restartable.client(key) as http:
        photo = upload(http, media, "photo.png", "image/png")
        long_video = upload(http, media, "long.mp4", "video/mp4")
        short_video = upload(http, media, "short.mp4", "video/mp4")
        # Loopback URLs are refused without an allow list: uploads are the way in.
        refused = http.post(f"/v2/{MODEL}", json={"image": photo, "video": media.url("short.mp4")})
        assert refused.status_code == 400 and "loopback" in refused.json()["error"]

        running = http.post(f"/v2/{MODEL}", json={"image": photo, "video": long_video}).json()["request_id"]
        queued = http.post(f"/v2/{MODEL}", json={"image": photo, "video": short_video}).json()["request_id"]
        wait_for(lambda: status_of(http, running)["progress"] > 0.05, 60)

    assert restartable.process is not None
    family = psutil.Process(restartable.process.pid).children(recursive=True)
    assert family, "the worker and its render should be running"
    restartable.kill_hard()
    # No worker or render outlives the server (they would go on claiming jobs).
    psutil.wait_procs(family, timeout=5)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    restartable.start()
    with restartable.client(key) as http:
        assert status_of(http, running)["status"] == "PROCESSING"  # until its lease runs out
        # The queued job runs first (the other's lease has yet to run out): its output is fetched
        # as soon as it is done, while its short retention lasts, whatever the other job takes.
        results = {}
        for request_id in (queued, running):
            wait_for(
                lambda rid=request_id: status_of(http, rid)["status"] in ("COMPLETED", "FAILED"), 120, 0.2
            )
            results[request_id] = http.get(f"/v2/requests/{request_id}").json()
            if request_id == queued:
                output = results[queued]["output"]
                assert httpx.get(output).status_code == 200
        assert results[running]["status"] == "COMPLETED", results[running]
        assert results[running]["metrics"]["attempts"] == 2
        assert results[queued]["status"] == "COMPLETED" and results[queued]["metrics"]["attempts"] == 1

        # Results are kept for the retention period, then they and their files are gone.
        wait_for(lambda: http.get(f"/v2/requests/{queued}/status").status_code == 404, RETENTION_S + 10)
        assert http.get(f"/v2/requests/{queued}").status_code == 404
        assert httpx.get(output).status_code in (403, 404)
        outputs = restartable.data_dir / "artifacts" / "outputs"
        wait_for(lambda: not list(outputs.glob(f"{queued}*")), 5)
        # The scratch of the killed attempt is gone too.
        assert not list((restartable.data_dir / "work").glob(f"{running}_*"))


def test_a_graceful_stop_mid_render_hands_the_job_back(restartable: Server, media: Media) -> None:
    key = restartable.create_key()
    with restartable.client(key) as http:
        photo = upload(http, media, "photo.png", "image/png")
        video = upload(http, media, "long.mp4", "video/mp4")
        running = http.post(f"/v2/{MODEL}", json={"image": photo, "video": video}).json()["request_id"]
        wait_for(lambda: status_of(http, running)["progress"] > 0.05, 60)

    restartable.stop()  # SIGTERM, as a service manager stops it
    restartable.start()
    with restartable.client(key) as http:
        wait_for(lambda: status_of(http, running)["status"] in ("COMPLETED", "FAILED"), 120, 0.2)
        result = http.get(f"/v2/requests/{running}").json()
    # Handed back when its worker stopped, not left to a lost lease: the interrupted run is not
    # counted as an attempt (a lease that ran out would make this attempt 2).
    assert result["status"] == "COMPLETED", result
    assert result["metrics"]["attempts"] == 1
