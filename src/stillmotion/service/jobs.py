"""The job store: one small interface that is both the record of every request and the work queue.

State machine (DESIGN.md §2, §6)::

    QUEUED ──claim──▶ PROCESSING ──complete──▶ COMPLETED
      │                  │  └──────fail─────▶ FAILED
      └──────cancel──────┴──────cancel─────▶ FAILED ("cancelled")
    PROCESSING whose lease ran out ──claim──▶ PROCESSING again (attempts < max) or, by sweep, FAILED

Delivery is at least once: a worker that stalls past its lease may find its job re-run elsewhere. So
every write a worker makes carries its lease's fencing token and is a no-op once the lease is lost,
and every terminal transition happens at most once. That makes status writes idempotent.

``SqliteJobStore`` (``sqlite_jobs.py``) is the embedded implementation; a Redis/RQ one can implement
the same Protocol (job hashes with a TTL, a list as the queue, a lease key per running job).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    """The four states of the hosted API's contract."""

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED)


class FailureKind(StrEnum):
    """Why a request failed: decides the HTTP status of a synchronous answer and what is logged."""

    INPUT = "input"
    """The user's to fix (bad media, no face, safety block, too little credit): 422."""
    INTERNAL = "internal"
    """Our bug or a crashed worker: 500 on the synchronous endpoint."""
    CANCELLED = "cancelled"


CANCELLED_ERROR = "cancelled"


@dataclass(frozen=True)
class NewJob:
    """What the API records at submit."""

    id: str
    key_id: str
    model: str
    params: dict[str, Any]
    """The validated request parameters, ``seed`` already resolved (never -1) so a re-run is identical."""
    base_url: str
    """Base of the absolute URLs for this request (webhooks are built outside any HTTP request)."""
    webhook_url: str | None = None


@dataclass(frozen=True)
class Job:
    id: str
    key_id: str
    model: str
    params: dict[str, Any]
    base_url: str
    webhook_url: str | None
    status: Status
    progress: float
    """0..1; only ever increases within one attempt."""
    error: str | None
    failure: FailureKind | None
    result: dict[str, Any] | None
    """On COMPLETED: ``output`` (artifact name) and ``metrics``."""
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float | None
    """When a finished request is forgotten; ``None`` while it is not finished."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a job. ``token`` fences every later write of that worker."""

    job: Job
    token: str


@dataclass(frozen=True)
class IdempotencyKey:
    """An ``Idempotency-Key`` header value with a digest of the request it was first used for."""

    key: str
    body_sha256: str


class IdempotencyConflict(Exception):
    """The idempotency key was already used by this API key for a different request."""


class ConcurrencyExceeded(Exception):
    """The API key already has as many unfinished requests as it may."""


@dataclass(frozen=True)
class SweepReport:
    failed: list[Job]
    """Jobs whose worker died ``max_attempts`` times, now FAILED."""
    expired: list[Job]
    """Finished jobs past their retention, now forgotten (their artifacts are the caller's to delete)."""


class JobStore(Protocol):
    """Persistent jobs and the queue over them. All times are Unix seconds."""

    def submit(
        self, job: NewJob, *, idempotency: IdempotencyKey | None = None, max_active: int | None = None
    ) -> tuple[Job, bool]:
        """Record a QUEUED job. Returns ``(job, created)``: with a known idempotency key and the same body
        digest, the earlier job and ``False``. Raises ``IdempotencyConflict`` for the same key with
        another body, ``ConcurrencyExceeded`` when the key already has ``max_active`` unfinished jobs."""
        ...

    def claim(self, worker: str, lease_s: float) -> Lease | None:
        """Take the oldest runnable job (QUEUED, or PROCESSING with an expired lease and attempts left).
        Cheap when there is nothing to do: workers call it in a loop."""
        ...

    def heartbeat(self, lease: Lease, progress: float, lease_s: float) -> bool:
        """Extend the lease and record progress. ``False``: the lease is lost (cancelled, or taken over
        after it expired) and the worker must stop."""
        ...

    def release(self, lease: Lease) -> bool:
        """PROCESSING → QUEUED under this lease, the attempt not counted: its worker is shutting down
        and hands the job back now rather than when the lease runs out. ``False`` if the lease is lost."""
        ...

    def complete(self, lease: Lease, result: dict[str, Any]) -> Job | None:
        """PROCESSING → COMPLETED under this lease; ``None`` (and no change) if the lease is lost."""
        ...

    def fail(self, lease: Lease, error: str, failure: FailureKind) -> Job | None:
        """PROCESSING → FAILED under this lease; ``None`` (and no change) if the lease is lost."""
        ...

    def cancel(self, job_id: str, key_id: str) -> Job | None:
        """QUEUED/PROCESSING → FAILED ("cancelled"). ``None`` if the job is already finished or unknown."""
        ...

    def get(self, job_id: str, key_id: str | None = None) -> Job | None:
        """The job, if it exists and (when ``key_id`` is given) belongs to that key."""
        ...

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to run; ``None`` unless the job is QUEUED."""
        ...

    def active_count(self, key_id: str) -> int:
        """Unfinished (QUEUED or PROCESSING) jobs of the key."""
        ...

    def sweep(self, now: float) -> SweepReport:
        """Fail jobs whose worker died too often; forget finished jobs past ``expires_at``."""
        ...


@dataclass(frozen=True)
class Delivery:
    """One webhook message: its id is the Standard Webhooks ``webhook-id``, the same on every retry."""

    id: str
    job_id: str
    key_id: str
    url: str
    attempts: int
    body: bytes | None
    """Frozen at the first attempt, so every retry carries the same payload."""


class WebhookOutbox(Protocol):
    """Webhook deliveries waiting to be made. A job store enqueues one in the same transaction as the
    terminal transition of a job that has a ``webhook_url`` (a transactional outbox), so neither a crash
    nor a restart can lose it."""

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...

    def record_attempt(
        self,
        delivery_id: str,
        *,
        body: bytes,
        delivered: bool,
        next_attempt_at: float | None,
        error: str | None,
    ) -> None:
        """Record an attempt; ``next_attempt_at=None`` without ``delivered`` means we gave up."""
        ...
