"""The bodies the API takes and gives, as typed models (they also document ``/openapi.json``), and the
functions that build the response bodies from a job. Webhooks send the same result body as the GET."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stillmotion.params import AnimateParams
from stillmotion.service.jobs import Job, Status
from stillmotion.service.storage import ArtifactStore


class SubmitRequest(AnimateParams):
    """The hosted API's parameters plus what stillmotion offers beyond them."""

    webhook_url: str | None = Field(
        None,
        max_length=2000,
        description="Optional http(s) URL that receives the final result body, signed per Standard "
        "Webhooks, when the request finishes.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL")
        return value

    def animate_params(self) -> AnimateParams:
        """The shared parameters alone (what the job stores and the engine gets)."""
        return AnimateParams.model_validate(self.model_dump(exclude={"webhook_url"}))


class ErrorBody(BaseModel):
    error: str


class SubmitBody(BaseModel):
    request_id: str
    status: Status
    status_url: str
    response_url: str
    cancel_url: str
    events_url: str


class StatusBody(BaseModel):
    model_config = ConfigDict(use_enum_values=True)

    request_id: str
    status: Status
    progress: float = Field(description="0..1")
    queue_position: int | None = Field(None, description="1 = next to run; only while QUEUED")
    error: str | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None


class Metrics(BaseModel):
    queue_time_s: float
    inference_time_s: float
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    seed: int
    has_audio: bool
    cost: float
    attempts: int


class ResultBody(StatusBody):
    output: str | None = Field(None, description="Signed URL of the MP4, valid until expires_at")
    metrics: Metrics | None = None
    expires_at: str | None = None


class UploadBody(BaseModel):
    url: str
    expires_at: str
    content_type: str
    size: int


def iso(timestamp: float | None) -> str | None:
    """RFC 3339 UTC timestamp, millisecond precision."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_urls(base_url: str, request_id: str) -> SubmitBody:
    base = f"{base_url.rstrip('/')}/v2/requests/{request_id}"
    return SubmitBody(
        request_id=request_id,
        status=Status.QUEUED,
        status_url=f"{base}/status",
        response_url=base,
        cancel_url=f"{base}/cancel",
        events_url=f"{base}/events",
    )


def status_body(job: Job, queue_position: int | None) -> dict[str, Any]:
    return StatusBody(
        request_id=job.id,
        status=job.status,
        progress=round(job.progress, 4),
        queue_position=queue_position,
        error=job.error,
        created_at=iso(job.created_at),
        started_at=iso(job.started_at),
        completed_at=iso(job.finished_at),
    ).model_dump(exclude_none=True)


def result_body(job: Job, artifacts: ArtifactStore, base_url: str) -> dict[str, Any]:
    """The final body of ``GET /v2/requests/{id}`` (and of the webhook). Only for a finished job."""
    body: dict[str, Any] = {**status_body(job, None), "expires_at": iso(job.expires_at)}
    if job.status is Status.COMPLETED and job.result and job.expires_at is not None:
        body["output"] = artifacts.url(job.result["output"], job.expires_at, base_url)
        body["metrics"] = job.result["metrics"]
    return ResultBody.model_validate(body).model_dump(exclude_none=True)
