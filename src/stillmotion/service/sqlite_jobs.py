"""The embedded ``JobStore`` (and ``WebhookOutbox``): one SQLite table is the record and the queue.

Workers claim with a single ``UPDATE ... RETURNING`` (SQLite >= 3.35), which SQLite runs under its
write lock, so two workers can never take the same job. A claim sets a lease (``lease_until``) and a
fresh fencing token; a worker renews the lease while it renders. A worker that dies stops renewing,
and once the lease has run out the job is claimable again, up to ``max_attempts`` runs.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from stillmotion.service.db import Database
from stillmotion.service.jobs import (
    CANCELLED_ERROR,
    ConcurrencyExceeded,
    Delivery,
    FailureKind,
    IdempotencyConflict,
    IdempotencyKey,
    Job,
    Lease,
    NewJob,
    Status,
    SweepReport,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    id           TEXT NOT NULL UNIQUE,
    key_id       TEXT NOT NULL,
    model        TEXT NOT NULL,
    params       TEXT NOT NULL,
    base_url     TEXT NOT NULL,
    webhook_url  TEXT,
    status       TEXT NOT NULL,
    progress     REAL NOT NULL DEFAULT 0,
    error        TEXT,
    failure      TEXT,
    result       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    worker       TEXT,
    lease_token  TEXT,
    lease_until  REAL,
    created_at   REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    expires_at   REAL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (key_id, status);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS idempotency (
    key_id       TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    body_sha256  TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_job ON idempotency (job_id);

CREATE TABLE IF NOT EXISTS webhook_outbox (
    id               TEXT PRIMARY KEY,               -- the Standard Webhooks message id
    job_id           TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    url              TEXT NOT NULL,
    state            TEXT NOT NULL,                  -- pending | delivered | abandoned
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    body             BLOB,
    last_error       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON webhook_outbox (state, next_attempt_at);
"""

_ACTIVE = (Status.QUEUED.value, Status.PROCESSING.value)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        key_id=row["key_id"],
        model=row["model"],
        params=json.loads(row["params"]),
        base_url=row["base_url"],
        webhook_url=row["webhook_url"],
        status=Status(row["status"]),
        progress=row["progress"],
        error=row["error"],
        failure=FailureKind(row["failure"]) if row["failure"] else None,
        result=json.loads(row["result"]) if row["result"] else None,
        attempts=row["attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
    )


class SqliteJobStore:
    """``JobStore`` and ``WebhookOutbox`` on one SQLite file; safe to use from several processes."""

    def __init__(self, path: Path, *, retention_s: float, max_attempts: int) -> None:
        self.db = Database(path)
        self.retention_s = retention_s
        self.max_attempts = max_attempts
        self.db.migrate(SCHEMA)

    # -- the API's side --------------------------------------------------------------------------
    def submit(
        self, job: NewJob, *, idempotency: IdempotencyKey | None = None, max_active: int | None = None
    ) -> tuple[Job, bool]:
        now = time.time()
        with self.db.transaction() as conn:
            if idempotency is not None:
                row = conn.execute(
                    "SELECT body_sha256, job_id FROM idempotency WHERE key_id = ? AND idem_key = ?",
                    (job.key_id, idempotency.key),
                ).fetchone()
                if row is not None:
                    if row["body_sha256"] != idempotency.body_sha256:
                        raise IdempotencyConflict(idempotency.key)
                    earlier = conn.execute("SELECT * FROM jobs WHERE id = ?", (row["job_id"],)).fetchone()
                    if earlier is not None:
                        return _job(earlier), False
            if max_active is not None:
                (active,) = conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE key_id = ? AND status IN (?, ?)", (job.key_id, *_ACTIVE)
                ).fetchone()
                if active >= max_active:
                    raise ConcurrencyExceeded(job.key_id)
            row = conn.execute(
                "INSERT INTO jobs (id, key_id, model, params, base_url, webhook_url, status, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    job.id,
                    job.key_id,
                    job.model,
                    json.dumps(job.params, sort_keys=True),
                    job.base_url,
                    job.webhook_url,
                    Status.QUEUED.value,
                    now,
                    now,
                ),
            ).fetchone()
            if idempotency is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency (key_id, idem_key, body_sha256, job_id) "
                    "VALUES (?, ?, ?, ?)",
                    (job.key_id, idempotency.key, idempotency.body_sha256, job.id),
                )
            return _job(row), True

    def get(self, job_id: str, key_id: str | None = None) -> Job | None:
        row = self.db.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or (key_id is not None and row["key_id"] != key_id):
            return None
        return _job(row)

    def queue_position(self, job: Job) -> int | None:
        if job.status is not Status.QUEUED:
            return None
        (ahead,) = self.db.conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE status = ? AND seq < (SELECT seq FROM jobs WHERE id = ?)",
            (Status.QUEUED.value, job.id),
        ).fetchone()
        return ahead + 1

    def active_count(self, key_id: str) -> int:
        (count,) = self.db.conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE key_id = ? AND status IN (?, ?)", (key_id, *_ACTIVE)
        ).fetchone()
        return count

    def cancel(self, job_id: str, key_id: str) -> Job | None:
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = ?, error = ?, failure = ?, lease_token = NULL, finished_at = ?, "
                "expires_at = ?, updated_at = ? WHERE id = ? AND key_id = ? AND status IN (?, ?) RETURNING *",
                (
                    Status.FAILED.value,
                    CANCELLED_ERROR,
                    FailureKind.CANCELLED.value,
                    now,
                    now + self.retention_s,
                    now,
                    job_id,
                    key_id,
                    *_ACTIVE,
                ),
            ).fetchone()
            return self._settled(conn, row, now)

    # -- the workers' side -----------------------------------------------------------------------
    _RUNNABLE = (
        "status = 'QUEUED' OR (status = 'PROCESSING' AND lease_until < :now AND attempts < :max_attempts)"
    )

    def claim(self, worker: str, lease_s: float) -> Lease | None:
        now = time.time()
        args = {"now": now, "max_attempts": self.max_attempts}
        # A read first: idle workers poll, and a read takes no write lock.
        runnable = self.db.conn.execute(f"SELECT 1 FROM jobs WHERE {self._RUNNABLE} LIMIT 1", args)
        if runnable.fetchone() is None:
            return None
        token = secrets.token_hex(16)
        row = self.db.conn.execute(
            "UPDATE jobs SET status = 'PROCESSING', worker = :worker, lease_token = :token, "
            "lease_until = :until, attempts = attempts + 1, progress = 0, started_at = :now, "
            "updated_at = :now "
            f"WHERE seq = (SELECT seq FROM jobs WHERE {self._RUNNABLE} ORDER BY seq LIMIT 1) RETURNING *",
            {**args, "worker": worker, "token": token, "until": now + lease_s},
        ).fetchone()
        return None if row is None else Lease(job=_job(row), token=token)

    def heartbeat(self, lease: Lease, progress: float, lease_s: float) -> bool:
        now = time.time()
        cursor = self.db.conn.execute(
            "UPDATE jobs SET lease_until = ?, progress = MAX(progress, ?), updated_at = ? "
            "WHERE id = ? AND lease_token = ? AND status = 'PROCESSING'",
            (now + lease_s, min(max(progress, 0.0), 1.0), now, lease.job.id, lease.token),
        )
        return cursor.rowcount == 1

    def release(self, lease: Lease) -> bool:
        now = time.time()
        cursor = self.db.conn.execute(
            "UPDATE jobs SET status = 'QUEUED', worker = NULL, lease_token = NULL, lease_until = NULL, "
            "attempts = attempts - 1, progress = 0, started_at = NULL, updated_at = ? "
            "WHERE id = ? AND lease_token = ? AND status = 'PROCESSING'",
            (now, lease.job.id, lease.token),
        )
        return cursor.rowcount == 1

    def complete(self, lease: Lease, result: dict[str, Any]) -> Job | None:
        return self._finish(lease, Status.COMPLETED, result=result)

    def fail(self, lease: Lease, error: str, failure: FailureKind) -> Job | None:
        return self._finish(lease, Status.FAILED, error=error, failure=failure)

    def _finish(
        self,
        lease: Lease,
        status: Status,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        failure: FailureKind | None = None,
    ) -> Job | None:
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE jobs SET status = ?, progress = CASE WHEN ? THEN 1 ELSE progress END, result = ?, "
                "error = ?, failure = ?, lease_token = NULL, finished_at = ?, expires_at = ?, updated_at = ? "
                "WHERE id = ? AND lease_token = ? AND status = 'PROCESSING' RETURNING *",
                (
                    status.value,
                    status is Status.COMPLETED,
                    json.dumps(result) if result is not None else None,
                    error,
                    failure.value if failure else None,
                    now,
                    now + self.retention_s,
                    now,
                    lease.job.id,
                    lease.token,
                ),
            ).fetchone()
            return self._settled(conn, row, now)

    # -- housekeeping ----------------------------------------------------------------------------
    def sweep(self, now: float) -> SweepReport:
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE jobs SET status = 'FAILED', failure = ?, lease_token = NULL, finished_at = ?, "
                "expires_at = ?, updated_at = ?, error = 'the render was interrupted ' || attempts || "
                "' times (its worker process stopped); giving up' "
                "WHERE status = 'PROCESSING' AND lease_until < ? AND attempts >= ? RETURNING *",
                (FailureKind.INTERNAL.value, now, now + self.retention_s, now, now, self.max_attempts),
            ).fetchall()
            failed = [_job(row) for row in rows]
            for job in failed:
                self._enqueue_webhook(conn, job, now)
            expired = [
                _job(row)
                for row in conn.execute(
                    "DELETE FROM jobs WHERE expires_at < ? RETURNING *", (now,)
                ).fetchall()
            ]
            conn.executemany("DELETE FROM idempotency WHERE job_id = ?", [(job.id,) for job in expired])
            conn.execute(
                "DELETE FROM webhook_outbox WHERE state != 'pending' AND updated_at < ?",
                (now - self.retention_s,),
            )
        return SweepReport(failed=failed, expired=expired)

    # -- webhook outbox --------------------------------------------------------------------------
    def _settled(self, conn: sqlite3.Connection, row: sqlite3.Row | None, now: float) -> Job | None:
        """The job a terminal ``UPDATE ... RETURNING`` produced (``None`` when it matched nothing, e.g.
        a stale lease), with its webhook queued in the same transaction."""
        if row is None:
            return None
        job = _job(row)
        self._enqueue_webhook(conn, job, now)
        return job

    @staticmethod
    def _enqueue_webhook(conn: sqlite3.Connection, job: Job, now: float) -> None:
        """Called inside the transaction that made ``job`` terminal (the outbox pattern)."""
        if job.webhook_url:
            conn.execute(
                "INSERT INTO webhook_outbox (id, job_id, key_id, url, state, next_attempt_at, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (f"msg_{uuid.uuid4().hex}", job.id, job.key_id, job.webhook_url, now, now, now),
            )

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = self.db.conn.execute(
            "SELECT * FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [
            Delivery(
                id=r["id"],
                job_id=r["job_id"],
                key_id=r["key_id"],
                url=r["url"],
                attempts=r["attempts"],
                body=r["body"],
            )
            for r in rows
        ]

    def record_attempt(
        self,
        delivery_id: str,
        *,
        body: bytes,
        delivered: bool,
        next_attempt_at: float | None,
        error: str | None,
    ) -> None:
        now = time.time()
        state = "delivered" if delivered else ("pending" if next_attempt_at is not None else "abandoned")
        self.db.conn.execute(
            "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, body = ?, last_error = ?, "
            "next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ? WHERE id = ?",
            (state, body, error, next_attempt_at, now, delivery_id),
        )

    def delivery_states(self, job_id: str) -> list[dict[str, Any]]:
        """For operators and tests: every webhook message of a job with its state."""
        rows = self.db.conn.execute(
            "SELECT id, url, state, attempts, last_error FROM webhook_outbox WHERE job_id = ?", (job_id,)
        ).fetchall()
        return [dict(r) for r in rows]
