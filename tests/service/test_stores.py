"""The job store's state machine, the key store's credits, the rate limiter and the webhook signature,
on real SQLite files (fast: no server, no render)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stillmotion.service.auth import KeyStore, RateLimit, RateLimiter
from stillmotion.service.config import ServiceConfig
from stillmotion.service.jobs import (
    ConcurrencyExceeded,
    FailureKind,
    IdempotencyConflict,
    IdempotencyKey,
    NewJob,
    Status,
)
from stillmotion.service.sqlite_jobs import SqliteJobStore
from stillmotion.service.storage import LocalArtifactStore
from stillmotion.service.webhooks import sign, verify


@pytest.fixture
def store(tmp_path: Path) -> SqliteJobStore:
    return SqliteJobStore(tmp_path / "jobs.db", retention_s=60, max_attempts=2)


def new(job_id: str, key: str = "key_a", webhook: str | None = None) -> NewJob:
    return NewJob(
        id=job_id,
        key_id=key,
        model="p-video-animate",
        params={"seed": 1},
        base_url="http://x",
        webhook_url=webhook,
    )


def test_claims_in_order_and_reports_queue_positions(store: SqliteJobStore) -> None:
    jobs = [store.submit(new(f"j{i}"))[0] for i in range(3)]
    assert [store.queue_position(job) for job in jobs] == [1, 2, 3]
    lease = store.claim("w", lease_s=10)
    assert lease is not None and lease.job.id == "j0" and lease.job.attempts == 1
    assert store.queue_position(store.get("j1")) == 1  # type: ignore[arg-type]
    assert store.active_count("key_a") == 3 and store.active_count("key_b") == 0


def test_writes_of_a_lost_lease_are_ignored(store: SqliteJobStore) -> None:
    store.submit(new("j"))
    stale = store.claim("w1", lease_s=0.01)
    assert stale is not None
    time.sleep(0.05)
    fresh = store.claim("w2", lease_s=10)  # the lease ran out: the job runs again
    assert fresh is not None and fresh.job.attempts == 2
    assert not store.heartbeat(stale, 0.5, 10)
    assert store.complete(stale, {"output": "x", "metrics": {}}) is None
    done = store.complete(fresh, {"output": "y", "metrics": {"cost": 1}})
    assert done is not None and done.status is Status.COMPLETED and done.progress == 1
    assert store.complete(fresh, {"output": "z", "metrics": {}}) is None  # idempotent: once only
    assert store.fail(fresh, "late", FailureKind.INTERNAL) is None
    assert store.get("j").result == {"output": "y", "metrics": {"cost": 1}}  # type: ignore[union-attr]


def test_a_job_handed_back_runs_next_without_spending_an_attempt(store: SqliteJobStore) -> None:
    store.submit(new("j0"))
    store.submit(new("j1"))
    lease = store.claim("w1", lease_s=60)
    assert lease is not None and lease.job.id == "j0"
    assert store.release(lease)
    job = store.get("j0")
    assert job is not None and job.status is Status.QUEUED and job.attempts == 0 and job.progress == 0
    assert store.queue_position(job) == 1  # still first in line, at once: no lease to wait out
    again = store.claim("w2", lease_s=60)
    assert again is not None and again.job.id == "j0" and again.job.attempts == 1
    assert not store.release(lease)  # the old lease is gone: nothing to hand back
    assert not store.heartbeat(lease, 0.5, 60)


def test_a_job_whose_worker_keeps_dying_fails_clearly(store: SqliteJobStore) -> None:
    store.submit(new("j", webhook="http://hook"))
    for _ in range(2):
        assert store.claim("w", lease_s=0.01) is not None
        time.sleep(0.05)
    assert store.claim("w", lease_s=10) is None  # attempts exhausted
    report = store.sweep(time.time())
    assert [job.id for job in report.failed] == ["j"]
    job = store.get("j")
    assert job is not None and job.status is Status.FAILED and "2 times" in (job.error or "")
    assert [d.job_id for d in store.due_deliveries(time.time(), 10)] == ["j"]  # the webhook is queued


def test_cancel_progress_and_expiry(store: SqliteJobStore) -> None:
    store.submit(new("j"))
    lease = store.claim("w", lease_s=10)
    assert lease is not None and store.heartbeat(lease, 0.4, 10)
    assert store.get("j").progress == pytest.approx(0.4)  # type: ignore[union-attr]
    assert store.cancel("j", "key_other") is None  # not the owner
    cancelled = store.cancel("j", "key_a")
    assert cancelled is not None and cancelled.error == "cancelled"
    assert store.cancel("j", "key_a") is None and not store.heartbeat(lease, 0.5, 10)
    assert store.sweep(time.time()).expired == []
    assert [job.id for job in store.sweep(time.time() + 61).expired] == ["j"]
    assert store.get("j") is None


def test_idempotency_and_concurrency_are_atomic_with_the_insert(store: SqliteJobStore) -> None:
    _, created = store.submit(new("a"), idempotency=IdempotencyKey("k", "h1"))
    again, created_again = store.submit(new("b"), idempotency=IdempotencyKey("k", "h1"))
    assert created and not created_again and again.id == "a"
    with pytest.raises(IdempotencyConflict):
        store.submit(new("c"), idempotency=IdempotencyKey("k", "h2"))
    with pytest.raises(ConcurrencyExceeded):
        store.submit(new("d"), max_active=1)
    assert store.get("b") is None and store.get("d") is None


def test_credit_holds_settle_once(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.db")
    key, token = keys.create("t", 10, rate_limit=RateLimit.parse("3/s"), concurrency=2)
    assert keys.authenticate(token) == key and keys.authenticate("sm_wrong") is None
    assert keys.hold(key.id, "r1", 4) and not keys.hold(key.id, "r2", 7)
    assert keys.raise_hold("r1", 6) == (True, 4)
    assert keys.raise_hold("r1", 20)[0] is False
    keys.settle("r1", 5)
    keys.settle("r1", 5)  # a second settle changes nothing
    assert keys.get(key.id).credits == 5  # type: ignore[union-attr]
    keys.revoke(key.id)
    assert keys.authenticate(token) is None


def test_rate_limiter_sliding_window() -> None:
    limiter, limit = RateLimiter(), RateLimit.parse("2/min")
    assert limiter.hit("k", limit, now=0).remaining == 1
    assert limiter.hit("k", limit, now=10).remaining == 0
    refused = limiter.hit("k", limit, now=20)
    assert not refused.allowed and refused.reset_s == pytest.approx(40)
    assert limiter.hit("k", limit, now=60.5).allowed
    with pytest.raises(ValueError, match="N/min"):
        RateLimit.parse("fast")


def test_webhook_signature_matches_the_standard_webhooks_reference() -> None:
    # The test vector of the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    signature = sign(secret, msg_id, timestamp, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    assert verify(secret, headers, body, now=timestamp + 10)
    assert not verify(secret, headers, body, now=timestamp + 3600)  # replayed too late
    assert not verify(secret, headers, body + b"x", now=timestamp)


def test_signed_urls(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, b"k" * 32)
    url = store.url("outputs/abc_1.mp4", time.time() + 60, "https://api.example.com/")
    assert url.startswith("https://api.example.com/v2/files/outputs/abc_1.mp4?expires=")
    assert store.name_from_url(url) == "outputs/abc_1.mp4"
    assert store.name_from_url(url.replace("abc_1", "abc_2")) is None
    assert store.name_from_url(store.url("outputs/abc_1.mp4", time.time() - 1, "http://x")) is None
    assert LocalArtifactStore(tmp_path, b"j" * 32).name_from_url(url) is None
    assert store.name_from_url("https://x/v2/files/../secret?expires=9999999999&signature=a") is None


def test_config_from_environment_and_json(tmp_path: Path) -> None:
    config = ServiceConfig.from_env(
        {"STILLMOTION_RETENTION_S": "5", "STILLMOTION_ALLOW_HOSTS": "a, b", "STILLMOTION_ACCESS_LOG": "yes"},
        data_dir=tmp_path,
        port=None,
    )
    assert config.retention_s == 5 and config.allow_hosts == {"a", "b"} and config.access_log
    assert ServiceConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="STILLMOTION_LEASE_S"):
        ServiceConfig.from_env({"STILLMOTION_LEASE_S": "long"})
    assert config.url_signing_key() == config.url_signing_key() and len(config.url_signing_key()) == 32
