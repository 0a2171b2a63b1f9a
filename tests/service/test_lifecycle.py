"""Beyond the seed: cancel, idempotent submits, signed webhooks, progress events, credits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import psutil
import pytest

from stillmotion.service.auth import KeyStore

from cli_support import run_cli
from service_support import MODEL, Media, Server, WebhookReceiver, payload, status_of, wait_for

pytestmark = pytest.mark.timeout(180)


def renders(server: Server) -> list[psutil.Process]:
    """Render processes: the children of the server's worker processes."""
    assert server.process is not None
    workers = psutil.Process(server.process.pid).children()
    return [child for worker in workers for child in worker.children()]


def balance(server: Server, key: str) -> tuple[float, float]:
    """(available credits, credits held) of a key, from the server's own database."""
    store = KeyStore(server.data_dir / "stillmotion.db")
    found = store.find(key)
    assert found is not None
    held = dict((k.id, h) for k, h in store.list())[found.id]
    return found.credits, held


def test_cancel_stops_a_running_render_within_a_second(server: Server, key: str, media: Media) -> None:
    with server.client(key) as http:
        request_id = http.post(
            f"/v2/{MODEL}", json=payload(media, video=media.url("long.mp4"), resolution="1080p")
        ).json()["request_id"]
        wait_for(lambda: status_of(http, request_id)["progress"] > 0.05, 60)
        assert renders(server), "a render process should be running"
        assert balance(server, key)[1] > 0  # the estimate is held while it runs

        cancelled_at = time.monotonic()
        answer = http.post(f"/v2/requests/{request_id}/cancel")
        assert answer.status_code == 200
        assert answer.json()["status"] == "FAILED" and answer.json()["error"] == "cancelled"
        wait_for(lambda: not renders(server), 2, interval=0.02)
        assert time.monotonic() - cancelled_at < 1.0

        status = http.get(f"/v2/requests/{request_id}/status")
        assert status.status_code == 422 and status.json()["error"] == "cancelled"
        assert http.get(f"/v2/requests/{request_id}").status_code == 422
        # Not charged, and cancelling again changes nothing.
        assert balance(server, key) == (1000, 0)
        again = http.post(f"/v2/requests/{request_id}/cancel")
        assert again.status_code == 200 and again.json()["error"] == "cancelled"


def test_a_cancelled_queued_request_never_runs(server: Server, key: str, media: Media) -> None:
    with server.client(key) as http:
        long_job = payload(media, video=media.url("long.mp4"))
        first = http.post(f"/v2/{MODEL}", json=long_job).json()["request_id"]
        second = http.post(f"/v2/{MODEL}", json=payload(media)).json()["request_id"]
        status = status_of(http, second)
        assert status["status"] == "QUEUED" and status["queue_position"] >= 1
        assert http.post(f"/v2/requests/{second}/cancel").json()["error"] == "cancelled"
        http.post(f"/v2/requests/{first}/cancel")
        time.sleep(1.0)
        status = status_of(http, second)
        assert status["status"] == "FAILED" and "started_at" not in status


def test_idempotency_key_returns_the_same_request_or_409(server: Server, key: str, media: Media) -> None:
    with server.client(key) as http:
        headers = {"Idempotency-Key": "order-17"}
        first = http.post(f"/v2/{MODEL}", json=payload(media), headers=headers)
        # Same body with other key order and spacing: the same request, no second hold.
        reordered = json.dumps(dict(reversed(payload(media).items())), indent=2)
        replay = http.post(
            f"/v2/{MODEL}", content=reordered, headers={**headers, "content-type": "application/json"}
        )
        assert first.status_code == replay.status_code == 200
        assert replay.json()["request_id"] == first.json()["request_id"]
        assert balance(server, key)[1] == pytest.approx(10.0)  # one hold (10 s at 720p) only
        conflict = http.post(f"/v2/{MODEL}", json=payload(media, seed=7), headers=headers)
        assert conflict.status_code == 409 and "Idempotency-Key" in conflict.json()["error"]
        http.post(f"/v2/requests/{first.json()['request_id']}/cancel")


def _verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, written from the Standard Webhooks spec (not with stillmotion's code)."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    mac = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


def test_webhook_is_signed_retried_and_carries_the_result(
    server: Server, key: str, media: Media, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.statuses[:] = [500, 200]  # the first delivery fails, the retry succeeds
    shown = run_cli("keys", "webhook-secret", "--data-dir", server.data_dir, key)
    secret = shown.stdout.strip().splitlines()[-1]
    with server.client(key) as http:
        request_id = http.post(f"/v2/{MODEL}", json=payload(media, webhook_url=webhook_receiver.url)).json()[
            "request_id"
        ]
        wait_for(lambda: len(webhook_receiver.received) >= 2, 90)
        first, retry = webhook_receiver.received[:2]
        assert first.headers["webhook-id"] == retry.headers["webhook-id"]
        assert first.body == retry.body
        for delivery in (first, retry):
            assert _verify_standard_webhook(secret, delivery.headers, delivery.body)
            assert not _verify_standard_webhook(secret, delivery.headers, delivery.body + b" ")
        body = json.loads(retry.body)
        assert body["request_id"] == request_id and body["status"] == "COMPLETED"
        result = http.get(f"/v2/requests/{request_id}").json()
        assert body["output"].split("?")[0] == result["output"].split("?")[0]
        assert body["metrics"] == result["metrics"]
        # Charged exactly the cost, nothing held any more.
        assert balance(server, key) == (pytest.approx(1000 - result["metrics"]["cost"]), 0)
        time.sleep(1.0)
        assert len(webhook_receiver.received) == 2  # delivered: no more attempts


def _events(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    events, name, data = [], "message", []
    for line in lines:
        if not line:
            if data:
                events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


def test_events_stream_progress_until_the_result(server: Server, key: str, media: Media) -> None:
    with server.client(key) as http:
        request_id = http.post(f"/v2/{MODEL}", json=payload(media)).json()["request_id"]
        with http.stream("GET", f"/v2/requests/{request_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = list(stream.iter_lines())
    events = _events(lines)
    names = [name for name, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"status"}
    order = {"QUEUED": 0, "PROCESSING": 1, "COMPLETED": 2}
    statuses = [order[body["status"]] for _, body in events[:-1]]
    assert statuses == sorted(statuses) and statuses[-1] == 2
    progress = [body["progress"] for _, body in events[:-1] if body["status"] == "PROCESSING"]
    assert progress == sorted(progress) and len(progress) >= 2
    assert events[-1][1]["status"] == "COMPLETED" and events[-1][1]["output"].startswith("http")
