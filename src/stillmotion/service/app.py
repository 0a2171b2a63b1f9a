"""The HTTP API (FastAPI): the hosted "P Video Animate" contract plus uploads, cancel, idempotent submits,
progress events and signed webhooks. ``docs/API.md`` documents every route.

Routes only translate HTTP to the job store, the key store and the artifact store and back; rendering
happens in worker processes (``worker.py``), so nothing here waits on the CPU-heavy engine.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stillmotion import __version__
from stillmotion.errors import InputError
from stillmotion.inputs import Kind
from stillmotion.params import describe_validation_error
from stillmotion.service.auth import ApiKey, KeyStore, RateDecision, RateLimiter
from stillmotion.service.config import ServiceConfig
from stillmotion.service.errors import ApiError
from stillmotion.service.jobs import (
    ConcurrencyExceeded,
    FailureKind,
    IdempotencyConflict,
    IdempotencyKey,
    Job,
    NewJob,
    Status,
)
from stillmotion.service.pricing import cost
from stillmotion.service.schemas import (
    ErrorBody,
    ResultBody,
    StatusBody,
    SubmitBody,
    SubmitRequest,
    UploadBody,
    iso,
    request_urls,
    result_body,
    status_body,
)
from stillmotion.service.sqlite_jobs import SqliteJobStore
from stillmotion.service.storage import FILES_PREFIX, LocalArtifactStore, accepted_types
from stillmotion.service.sweeper import UPLOADS, Sweeper
from stillmotion.service.webhooks import UnsafeTarget, WebhookDispatcher, check_target

log = logging.getLogger("stillmotion.api")

#: The models this server runs (the hosted API's slug).
MODELS = ("p-video-animate",)
REQUEST_ID_HEADER = "x-request-id"
_SYNC_POLL_S = 0.2
_EVENTS_POLL_S = 0.25
_EVENTS_KEEPALIVE_S = 15.0
_MAX_IDEMPOTENCY_KEY = 255

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Invalid parameters or request format",
        401: "Missing or invalid API key",
        403: "The key may not use this model or scope",
        404: "No such model or request",
        406: "Not enough credits",
        409: "Idempotency-Key reused with a different body",
        429: "Rate or concurrency limit reached",
        500: "Internal server error",
    }.items()
}
_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SubmitRequest.model_json_schema()}},
    }
}


class RequestIdMiddleware:
    """Gives every request an id (``request.state.request_id``, the ``x-request-id`` response header,
    and the ``request_id`` of a job it creates), and turns any unhandled exception into a 500 JSON body
    with no stack trace (the trace goes to the server log with the id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id
            )
            if started:
                raise
            response = JSONResponse({"error": f"internal server error (request {request_id})"}, 500)
            await response(scope, receive, send_with_id)


@dataclass
class Services:
    """What the routes work with; built once per app."""

    config: ServiceConfig
    jobs: SqliteJobStore
    keys: KeyStore
    artifacts: LocalArtifactStore
    limiter: RateLimiter

    @classmethod
    def open(cls, config: ServiceConfig) -> "Services":
        config.work_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            config=config,
            jobs=SqliteJobStore(
                config.db_path, retention_s=config.retention_s, max_attempts=config.max_attempts
            ),
            keys=KeyStore(config.db_path),
            artifacts=LocalArtifactStore(config.artifacts_dir, config.url_signing_key()),
            limiter=RateLimiter(),
        )


def _json_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(config: ServiceConfig, services: Services | None = None) -> FastAPI:
    """The ASGI app. Background tasks (webhook deliveries, the sweeper) run while it is served."""
    s = services or Services.open(config)
    policy = config.fetch_policy()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        dispatcher = WebhookDispatcher(
            s.jobs,
            s.jobs,
            s.keys,
            s.artifacts,
            policy=policy,
            max_attempts=config.webhook_max_attempts,
            backoff_base_s=config.webhook_backoff_s,
            timeout_s=config.webhook_timeout_s,
        )
        sweeper = Sweeper(
            s.jobs,
            s.keys,
            s.artifacts,
            work_dir=config.work_dir,
            retention_s=config.retention_s,
            upload_ttl_s=config.upload_ttl_s,
            lease_s=config.lease_s,
        )
        tasks = [
            asyncio.create_task(dispatcher.run(config.webhook_poll_s), name="webhooks"),
            asyncio.create_task(_sweep_forever(sweeper, config.sweep_interval_s), name="sweeper"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="stillmotion",
        version=__version__,
        lifespan=lifespan,
        description="Animate a still photo with the motion and the audio of a driving video. "
        "Compatible with the hosted P Video Animate API; see docs/API.md.",
    )
    app.add_middleware(RequestIdMiddleware)
    app.state.services = s

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _json_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            detail = "not found: no such endpoint (see /docs)"
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(parts) or "bad request"}, status_code=400)

    api_key_header = APIKeyHeader(
        name="x-api-key", auto_error=False, description="An API key made with `stillmotion keys create`."
    )

    # Routes and dependencies are ``async def`` on purpose: their SQLite reads take microseconds, far less
    # than a hop to the thread pool, which keeps status polls fast under load.
    async def authenticate(token: Annotated[str | None, Security(api_key_header)]) -> ApiKey:
        key = s.keys.authenticate(token)
        if key is None:
            raise ApiError(
                401, "missing API key: send it in the x-api-key header" if not token else "invalid API key"
            )
        return key

    Key = Annotated[ApiKey, Security(authenticate)]

    def require_scope(key: ApiKey, scope: str) -> None:
        if not key.allows_scope(scope):
            raise ApiError(403, f"this API key lacks the {scope!r} scope")

    def require_model(key: ApiKey, model: str) -> None:
        if model not in MODELS:
            raise ApiError(404, f"no model {model!r}; available: {', '.join(MODELS)}")
        if not key.allows_model(model):
            raise ApiError(403, f"this API key may not use the model {model!r}")

    def rate_limit(key: ApiKey) -> RateDecision | None:
        if key.rate_limit is None:
            return None
        decision = s.limiter.hit(key.id, key.rate_limit)
        if not decision.allowed:
            raise ApiError(
                429,
                f"rate limit of {key.rate_limit} reached; retry in {decision.reset_s:.0f} s",
                headers={"Retry-After": str(max(1, round(decision.reset_s + 0.499))), **decision.headers()},
            )
        return decision

    def base_url(request: Request) -> str:
        return config.public_base_url or str(request.base_url).rstrip("/")

    def own_job(request_id: str, key: ApiKey) -> Job:
        # Another key's request is answered exactly like an unknown one: ids are not an oracle.
        job = s.jobs.get(request_id, key.id)
        if job is None:
            raise ApiError(
                404,
                f"no request {request_id!r} (unknown, expired after "
                f"{config.retention_s:g} s, or not made with this key)",
            )
        return job

    # -- submit ------------------------------------------------------------------------------------
    def inspect_sources(req: SubmitRequest, base: str) -> float | None:
        """400 for sources (and a webhook URL) that can never work; the driving video's duration when it
        can be told cheaply (inline data, our uploads), else ``None``. Runs in a thread: it may decode
        megabytes and resolve host names."""
        from stillmotion.engine.media import probe_video
        from stillmotion.inputs import check_source, fetch

        video_path: Path | None = None
        scratch: Path | None = None
        try:
            sources: tuple[tuple[Kind, str], ...] = (("image", req.image), ("video", req.video))
            for kind, source in sources:
                name = s.artifacts.name_from_url(source)
                if name is not None:
                    stored = mimetypes.guess_type(name)[0] or "unknown"
                    if not stored.startswith(kind + "/"):
                        raise ApiError(400, f"{kind}: the uploaded file is {stored}, not {kind}")
                    if kind == "video":
                        video_path = s.artifacts.path(name)
                    continue
                parts = urlsplit(source)
                if FILES_PREFIX in parts.path and parts.netloc == urlsplit(base).netloc:
                    raise ApiError(
                        400,
                        f"{kind}: this upload URL has expired or its signature is wrong; "
                        "upload the file again",
                    )
                check_source(source, kind, policy)
                if kind == "video" and not source.lower().startswith(("http://", "https://")):
                    scratch = Path(tempfile.mkdtemp(prefix="probe-", dir=config.work_dir))
                    video_path = fetch(source, "video", scratch, policy)
            if req.webhook_url:
                check_target(req.webhook_url, policy)
            return None if video_path is None else probe_video(video_path).duration
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        except UnsafeTarget as exc:
            raise ApiError(400, f"webhook_url: {exc}") from None
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    async def submit(request: Request, key: ApiKey, model: str) -> tuple[Job, dict[str, str]]:
        """Everything both submit routes do; returns the job and the rate-limit headers."""
        require_model(key, model)
        require_scope(key, "submit")
        decision = rate_limit(key)
        headers = decision.headers() if decision else {}
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"malformed JSON body: {exc}", headers=headers) from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object of parameters", headers=headers)
        try:
            req = SubmitRequest.model_validate(data)
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc, SubmitRequest), headers=headers) from None
        idempotency = _idempotency(request, model, data)
        base = base_url(request)
        seconds = await run_in_threadpool(inspect_sources, req, base)

        from stillmotion.render import resolve_seed  # seed fixed now, so a re-run renders the same video

        params = req.animate_params().model_dump()
        params["seed"] = resolve_seed(req.seed)
        request_id: str = request.state.request_id
        known = config.default_hold_seconds if seconds is None else seconds
        estimate = cost(known, req.resolution, req.turbo)
        if not s.keys.hold(key.id, request_id, estimate):
            what = (
                f"{seconds:.1f} s of video"
                if seconds is not None
                else f"a first estimate of {config.default_hold_seconds:g} s, as the video's length "
                "is not known before it is fetched"
            )
            current = s.keys.get(key.id)
            raise ApiError(
                406,
                f"insufficient credits: this request needs {estimate:g} credits ({what} at "
                f"{req.resolution}{', turbo' if req.turbo else ''}); the key has "
                f"{current.credits if current else 0:g}",
                headers=headers,
            )
        try:
            job, created = s.jobs.submit(
                NewJob(
                    id=request_id,
                    key_id=key.id,
                    model=model,
                    params=params,
                    base_url=base,
                    webhook_url=req.webhook_url,
                ),
                idempotency=idempotency,
                max_active=key.concurrency,
            )
        except IdempotencyConflict:
            s.keys.settle(request_id, 0.0)
            raise ApiError(
                409, "this Idempotency-Key was already used with a different request body", headers=headers
            ) from None
        except ConcurrencyExceeded:
            s.keys.settle(request_id, 0.0)
            raise ApiError(
                429,
                f"concurrency limit reached: this key may have {key.concurrency} unfinished "
                "requests at a time",
                headers={"Retry-After": "5", **headers},
            ) from None
        except BaseException:
            s.keys.settle(request_id, 0.0)
            raise
        if not created:  # an idempotent replay: the earlier request stands, our hold is not needed
            s.keys.settle(request_id, 0.0)
        else:
            log.info("request %s QUEUED (key %s)", job.id, key.id)
        return job, headers

    # -- uploads (registered before /v2/{model}, which would match this path too) ----------------
    @app.post(
        "/v2/uploads",
        response_model=UploadBody,
        tags=["uploads"],
        summary="Upload an input file",
        responses={413: {"model": ErrorBody, "description": "Larger than the upload limit"}, **_ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in accepted_types()},
            }
        },
    )
    async def upload(request: Request, key: Key) -> JSONResponse:
        """Store a photo or video sent as the raw body (with its ``Content-Type``) and answer a signed URL
        to use as ``image`` or ``video``; it expires after ``STILLMOTION_UPLOAD_TTL_S``."""
        from stillmotion.inputs import SNIFF_BYTES, sniff

        require_scope(key, "upload")
        decision = rate_limit(key)
        headers = decision.headers() if decision else {}
        declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if declared.split("/")[0] not in ("image", "video"):
            raise ApiError(
                400,
                "Content-Type must be an image or video type "
                f"({', '.join(accepted_types())}); "
                f"got {declared or 'none'}",
                headers=headers,
            )
        cap = config.upload_max_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            raise ApiError(413, f"the upload is {int(length)} bytes; the limit is {cap}", headers=headers)
        fd, temp = tempfile.mkstemp(prefix="upload-", dir=config.work_dir)
        try:
            size, head = 0, b""
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise ApiError(
                            413, f"the upload is larger than the {cap}-byte limit", headers=headers
                        )
                    if len(head) < SNIFF_BYTES:
                        head += chunk[:SNIFF_BYTES]
                    out.write(chunk)
            sniffed = sniff(head)
            if sniffed is None or sniffed.kind != declared.split("/")[0]:
                raise ApiError(
                    400,
                    f"the body is not {'an' if declared.startswith('image') else 'a'} "
                    f"{declared.split('/')[0]} in an accepted format",
                    headers=headers,
                )
            name = LocalArtifactStore.new_name(UPLOADS, sniffed.extension)
            s.artifacts.put(name, Path(temp))
        finally:
            Path(temp).unlink(missing_ok=True)
        expires_at = time.time() + config.upload_ttl_s
        body = UploadBody(
            url=s.artifacts.url(name, expires_at, base_url(request)),
            expires_at=iso(expires_at) or "",
            content_type=sniffed.mime,
            size=size,
        )
        return JSONResponse(body.model_dump(), headers=headers)

    @app.post(
        "/v2/{model}",
        response_model=SubmitBody,
        tags=["requests"],
        openapi_extra=_SUBMIT_BODY,
        responses=_ERRORS,
        summary="Submit a request (asynchronous)",
    )
    async def submit_async(model: str, request: Request, key: Key) -> JSONResponse:
        """Queue the request and answer at once with its id and the URLs to poll, fetch and cancel it."""
        job, headers = await submit(request, key, model)
        body = request_urls(base_url(request), job.id).model_dump()
        body["status"] = job.status.value
        return JSONResponse(body, headers={**headers, "Location": body["status_url"]})

    @app.post(
        "/v1/{model}",
        tags=["requests"],
        openapi_extra=_SUBMIT_BODY,
        summary="Run a request (synchronous)",
        responses={
            200: {"content": {"video/mp4": {}}, "description": "The MP4"},
            422: {"model": ErrorBody, "description": "The request FAILED"},
            504: {"model": ErrorBody, "description": "Still running; poll the request id"},
            **_ERRORS,
        },
    )
    async def run_sync(model: str, request: Request, key: Key) -> Response:
        """Answer with the MP4 itself. Past the wait (``STILLMOTION_SYNC_TIMEOUT_S``, or less with the
        RFC 7240 header ``Prefer: wait=N``) answer 504 naming the request, which goes on and can be
        polled like an asynchronous one."""
        job, headers = await submit(request, key, model)
        wait_s = min(config.sync_timeout_s, _prefer_wait(request) or config.sync_timeout_s)
        deadline = time.monotonic() + wait_s
        while not job.status.terminal and time.monotonic() < deadline:
            await asyncio.sleep(_SYNC_POLL_S)
            job = s.jobs.get(job.id) or job
        if job.status is Status.COMPLETED and job.result:
            return _stream_artifact(s.artifacts, job.result["output"], headers)
        if job.status is Status.FAILED:
            code = 500 if job.failure is FailureKind.INTERNAL else 422
            return JSONResponse(
                {"error": job.error, "status": job.status.value, "request_id": job.id},
                status_code=code,
                headers=headers,
            )
        urls = request_urls(base_url(request), job.id)
        return JSONResponse(
            {
                "error": f"the request is still running after {wait_s:g} s; poll its status_url",
                "request_id": job.id,
                "status_url": urls.status_url,
                "response_url": urls.response_url,
            },
            status_code=504,
            headers=headers,
        )

    # -- requests ------------------------------------------------------------------------------------
    @app.get(
        "/v2/requests/{request_id}/status",
        response_model=StatusBody,
        tags=["requests"],
        responses={422: {"model": StatusBody, "description": "The request FAILED"}, **_ERRORS},
        summary="Poll a request's status",
    )
    async def get_status(request_id: str, key: Key) -> JSONResponse:
        """``QUEUED`` (with ``queue_position``), ``PROCESSING`` (with ``progress``), ``COMPLETED``, or
        ``FAILED`` (HTTP 422, with ``error``)."""
        require_scope(key, "read")
        job = own_job(request_id, key)
        body = status_body(job, s.jobs.queue_position(job))
        return JSONResponse(body, status_code=422 if job.status is Status.FAILED else 200)

    @app.get(
        "/v2/requests/{request_id}",
        response_model=ResultBody,
        tags=["requests"],
        responses={422: {"model": ResultBody, "description": "The request FAILED"}, **_ERRORS},
        summary="Fetch a request's result",
    )
    async def get_result(request_id: str, request: Request, key: Key) -> JSONResponse:
        """The final body (``output`` URL and ``metrics``) once finished; until then the status body."""
        require_scope(key, "read")
        job = own_job(request_id, key)
        if not job.status.terminal:
            return JSONResponse(status_body(job, s.jobs.queue_position(job)))
        body = result_body(job, s.artifacts, base_url(request))
        return JSONResponse(body, status_code=422 if job.status is Status.FAILED else 200)

    @app.post(
        "/v2/requests/{request_id}/cancel",
        response_model=StatusBody,
        tags=["requests"],
        responses=_ERRORS,
        summary="Cancel a request",
    )
    async def cancel(request_id: str, key: Key) -> JSONResponse:
        """Stop the request: a queued one never runs, a running render is killed within a second. It ends
        FAILED with error ``cancelled`` and is not charged. A finished request is left as it is."""
        require_scope(key, "submit")
        job = s.jobs.cancel(request_id, key.id)
        if job is not None:
            s.keys.settle(job.id, 0.0)
            log.info("request %s cancelled", job.id)
            return JSONResponse(status_body(job, None))
        # Already finished: nothing to stop. Answer its state, so a retried or late cancel is harmless.
        return JSONResponse(status_body(own_job(request_id, key), None))

    @app.get(
        "/v2/requests/{request_id}/events",
        tags=["requests"],
        summary="Stream status and progress",
        responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    )
    async def events(request_id: str, request: Request, key: Key) -> StreamingResponse:
        """Server-sent events (WHATWG HTML §9.2): ``status`` events carry the status body whenever the
        status, progress or queue position changes; a final ``result`` event carries the result body."""
        require_scope(key, "read")
        own_job(request_id, key)
        base = base_url(request)

        async def stream() -> AsyncIterator[str]:
            last: tuple[Any, ...] | None = None
            quiet_since = time.monotonic()
            sequence = 0
            yield "retry: 2000\n\n"
            while True:
                job = s.jobs.get(request_id, key.id)
                if job is None:
                    yield f"event: error\ndata: {json.dumps({'error': 'the request has expired'})}\n\n"
                    return
                body = status_body(job, s.jobs.queue_position(job))
                state = (body["status"], body["progress"], body.get("queue_position"))
                if state != last:
                    last, quiet_since, sequence = state, time.monotonic(), sequence + 1
                    yield f"id: {sequence}\nevent: status\ndata: {json.dumps(body)}\n\n"
                if job.status.terminal:
                    final = json.dumps(result_body(job, s.artifacts, base))
                    yield f"id: {sequence + 1}\nevent: result\ndata: {final}\n\n"
                    return
                if time.monotonic() - quiet_since > _EVENTS_KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(_EVENTS_POLL_S)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- files ---------------------------------------------------------------------------------------
    @app.api_route(
        FILES_PREFIX + "{name:path}",
        methods=["GET", "HEAD"],
        tags=["files"],
        summary="Download an output or upload (signed URL)",
        responses={
            200: {"content": {"video/mp4": {}}},
            206: {"description": "Partial content"},
            403: {"model": ErrorBody},
            404: {"model": ErrorBody},
        },
    )
    async def download(name: str, expires: str | None = None, signature: str | None = None) -> Response:
        """No API key: the signature is the credential. Serves byte ranges (RFC 7233, now RFC 9110 §14),
        so players can seek and downloads can resume."""
        if not s.artifacts.verify(name, expires, signature):
            raise ApiError(403, "this link is invalid or has expired")
        try:
            path = s.artifacts.path(name)
        except Exception:
            raise ApiError(404, "no such file") from None
        if not path.is_file():
            raise ApiError(404, "no such file (it has expired)")
        max_age = max(0, int(expires or 0) - int(time.time()))
        return FileResponse(
            path,
            media_type=s.artifacts.content_type(name),
            headers={"Cache-Control": f"private, max-age={max_age}"},
        )

    @app.get("/healthz", tags=["service"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        s.jobs.get("-")  # proves the database answers
        return {"status": "ok", "version": __version__}

    return app


def _idempotency(request: Request, model: str, data: dict[str, Any]) -> IdempotencyKey | None:
    """The ``Idempotency-Key`` header (IETF draft-ietf-httpapi-idempotency-key-header) with a digest of
    the parsed body, so the same request re-sent with other whitespace or key order still matches."""
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_IDEMPOTENCY_KEY:
        raise ApiError(400, f"Idempotency-Key must have 1 to {_MAX_IDEMPOTENCY_KEY} characters")
    canonical = json.dumps({"model": model, "body": data}, sort_keys=True, separators=(",", ":"))
    return IdempotencyKey(value, hashlib.sha256(canonical.encode()).hexdigest())


def _prefer_wait(request: Request) -> float | None:
    """Seconds from ``Prefer: wait=N`` (RFC 7240 §4.3), if given."""
    match = re.search(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", request.headers.get("prefer", ""))
    return float(match.group(1)) if match else None


def _stream_artifact(artifacts: LocalArtifactStore, name: str, headers: dict[str, str]) -> Response:
    handle = artifacts.open(name)
    size = os.fstat(handle.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with handle:
            while block := handle.read(1 << 20):
                yield block

    return StreamingResponse(
        chunks(), media_type=artifacts.content_type(name), headers={**headers, "Content-Length": str(size)}
    )


async def _sweep_forever(sweeper: Sweeper, interval_s: float) -> None:
    while True:
        try:
            counts = await asyncio.to_thread(sweeper.sweep, time.time())
            if any(counts.values()):
                log.info("sweep: %s", counts)
        except Exception:
            log.exception("sweep failed")
        await asyncio.sleep(interval_s)
