"""The Python SDK of a stillmotion server.

It behaves as users of the official ``segmind`` SDK (1.3.0) expect, with what that SDK lacks:

* ``submit`` → ``Job`` (``request_id`` at once), ``wait`` polls ``/v2/requests/{id}/status`` until
  COMPLETED (then returns the ``GET /v2/requests/{id}`` body) or FAILED (``InferenceFailed`` with the
  server's ``error``), and raises ``InferenceTimeout`` (keeping the ``request_id``) past its deadline;
  a FAILED body served with HTTP 422 is a result, not a transport error. ``run`` = submit + wait;
  ``run_sync`` is the one blocking ``POST /v1/p-video-animate`` and returns the MP4 bytes.
* Parameters are validated before sending by ``AnimateParams``, the model the server validates with,
  so a bad one fails at once with the server's own sentence (``BadRequest``, as a 400 would).
* Typed errors per HTTP status (``AuthenticationError`` for 401 ...), all ``APIError``s.
* Retries with exponential backoff and full jitter ("Exponential Backoff and Jitter", AWS
  Architecture Blog, 2015), honouring ``Retry-After`` (RFC 9110 §10.2.3): a refused connection or a
  429 is always retried (nothing was done); a 502/503/504, a timeout or a dropped connection only
  when repeating the request is harmless: reads, cancels, and submits, which carry an
  ``Idempotency-Key`` (one is generated per submit), so the server runs a retried submit once.
* ``events`` streams progress as server-sent events (WHATWG HTML §9.2), ``upload`` sends a local file
  for a URL the server accepts as input, and ``download`` saves an output atomically.
* The API key is sent only to the server's own origin: outputs on another host (object storage) are
  downloaded with their signed URL alone.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import ValidationError

from stillmotion import __version__
from stillmotion.errors import StillmotionError
from stillmotion.params import AnimateParams, describe_validation_error

#: The model slug of the hosted API this server re-creates.
MODEL = "p-video-animate"
#: Status values after which a request changes no more.
TERMINAL = frozenset({"COMPLETED", "FAILED"})
DEFAULT_WAIT_TIMEOUT_S = 600.0
DEFAULT_POLL_INTERVAL_S = 1.0

#: Statuses of a gateway or an overloaded server: the request may be repeated if that is harmless.
_TRANSIENT = frozenset({502, 503, 504})

ProgressCallback = Callable[[dict[str, Any]], None]


# --- errors -------------------------------------------------------------------------------------


class APIError(StillmotionError):
    """The server answered with an error status; ``detail`` is its ``{"error": ...}`` sentence."""

    def __init__(self, status_code: int, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.body = body or {}


class BadRequest(APIError):
    """400: invalid parameters (also raised before sending, by the same validation)."""


class AuthenticationError(APIError):
    """401: no API key, or one the server does not know (or has revoked)."""


class PermissionDenied(APIError):
    """403: the key may not do this (model or scope not granted)."""


class NotFound(APIError):
    """404: no such model or request (or its 1-hour retention is over)."""


class InsufficientCredits(APIError):
    """406: the key's credits do not cover the request."""


class RateLimited(APIError):
    """429: too many requests; ``retry_after`` is the server's advice in seconds, if it gave one."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status_code, detail, body)
        self.retry_after = retry_after


class InferenceFailed(StillmotionError):
    """The request reached FAILED (content blocks included); ``detail`` is the server's error."""

    def __init__(self, request_id: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"request {request_id} failed: {detail}")
        self.request_id = request_id
        self.detail = detail
        self.body = body or {}


class InferenceTimeout(StillmotionError):
    """``wait`` gave up before the request finished. It may still be running: wait on its
    ``request_id`` again later (results are kept for an hour)."""

    def __init__(self, request_id: str, elapsed_s: float) -> None:
        super().__init__(
            f"request {request_id} did not finish within {elapsed_s:.1f} s; "
            f"it may still be running: wait for it again by its id"
        )
        self.request_id = request_id
        self.elapsed_s = elapsed_s


_ERRORS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    406: InsufficientCredits,
    429: RateLimited,
}


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> APIError:
    body = _json(response)
    detail = str(body.get("error") or response.text[:200] or response.reason_phrase)
    cls = _ERRORS.get(response.status_code, APIError)
    if cls is RateLimited:
        return RateLimited(response.status_code, detail, body, _retry_after(response))
    return cls(response.status_code, detail, body)


# --- the job handle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A submitted request (``segmind``'s ``AsyncJob``): its id, its URLs, and shortcuts to the client."""

    request_id: str
    status_url: str
    response_url: str
    submit_response: dict[str, Any]
    client: Client = field(repr=False, compare=False)

    def status(self) -> dict[str, Any]:
        return self.client.status(self.request_id)

    def result(self) -> dict[str, Any]:
        return self.client.result(self.request_id)

    def wait(
        self,
        timeout: float = DEFAULT_WAIT_TIMEOUT_S,
        interval: float = DEFAULT_POLL_INTERVAL_S,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        return self.client.wait(self.request_id, timeout=timeout, interval=interval, on_progress=on_progress)

    def cancel(self) -> dict[str, Any]:
        return self.client.cancel(self.request_id)

    def events(self) -> Iterator[dict[str, Any]]:
        return self.client.events(self.request_id)


# --- the client ---------------------------------------------------------------------------------


class Client:
    """A stillmotion server's API.

    ``base_url`` is the server's root (``http://127.0.0.1:8000``); a trailing ``/v1`` or ``/v2``, as
    ``segmind`` clients are configured, is dropped. ``api_key`` defaults to ``STILLMOTION_API_KEY``.
    ``timeout`` bounds each HTTP call (``run_sync`` has its own, longer one); ``max_retries`` is how
    often one call is repeated after a transient failure.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
    ) -> None:
        base = base_url.rstrip("/")
        if base.rsplit("/", 1)[-1] in ("v1", "v2"):
            base = base.rsplit("/", 1)[0]
        self.base_url = base
        self.api_key = api_key or os.environ.get("STILLMOTION_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._origin = httpx.URL(base).copy_with(path="/", query=None, fragment=None)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": f"stillmotion-python/{__version__}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _headers(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        target = httpx.URL(url)
        same_origin = (target.scheme, target.host, target.port) == (
            self._origin.scheme,
            self._origin.host,
            self._origin.port,
        )
        if self.api_key and same_origin:  # never hand the key to another host (signed output URLs)
            headers["x-api-key"] = self.api_key
        return headers

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s * 6)
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))  # full jitter

    def _send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        file: Path | None = None,
        timeout: httpx.Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One API call with retries; returns a 2xx response, or a 422 (whose body may be a FAILED
        result), and raises the typed error of any other status."""
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            handle: IO[bytes] | None = file.open("rb") if file is not None else None
            try:
                request = self._http.build_request(
                    method,
                    url,
                    json=json_body,
                    content=handle,
                    headers=self._headers(url, headers),
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                response = self._http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the server: always safe to try again.
                if last:
                    where = f"the server at {self.base_url}" if url.startswith(self.base_url) else url
                    raise StillmotionError(f"cannot reach {where}: {exc}") from exc
                time.sleep(self._delay(attempt, None))
                continue
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # The server may have acted on it: repeat only what is harmless to repeat.
                if last or not idempotent:
                    raise StillmotionError(f"{method} {url} failed: {exc}") from exc
                time.sleep(self._delay(attempt, None))
                continue
            finally:
                if handle is not None:
                    handle.close()
            if response.is_success or response.status_code == 422:
                return response
            if stream:
                response.read()
            code = response.status_code
            retryable = code == 429 or (idempotent and code in _TRANSIENT)
            if retryable and not last:
                time.sleep(self._delay(attempt, _retry_after(response)))
                continue
            raise _error(response)
        raise AssertionError("unreachable")  # the loop either returns or raises

    def _terminal_tolerant(self, url: str) -> dict[str, Any]:
        """GET a status or result: a body announcing a terminal state is the answer whatever the HTTP
        code (FAILED comes with 422), as the hosted API and ``segmind`` do."""
        response = self._send("GET", url, idempotent=True)
        body = _json(response)
        if response.is_success or body.get("status") in TERMINAL:
            return body
        raise _error(response)

    @staticmethod
    def _validated(params: AnimateParams | None, fields: dict[str, Any]) -> AnimateParams:
        if params is not None:
            if fields:
                raise TypeError("give the parameters either as an AnimateParams or as keywords, not both")
            return params
        try:
            return AnimateParams(**fields)
        except ValidationError as exc:
            raise BadRequest(400, describe_validation_error(exc)) from exc

    # -- the API ---------------------------------------------------------------------------------

    def submit(
        self,
        params: AnimateParams | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        **fields: Any,
    ) -> Job:
        """``POST /v2/p-video-animate``: queue a request and return its ``Job`` at once.

        Give either an ``AnimateParams`` or its fields as keywords (``image=..., video=...``).
        ``idempotency_key`` (one is generated if not given) makes a retried submit return the same
        request instead of starting a second one. ``webhook_url`` receives the result when done.
        """
        body = self._validated(params, fields).model_dump(mode="json")
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        key = idempotency_key or uuid.uuid4().hex
        response = self._send(
            "POST",
            self._url(f"/v2/{MODEL}"),
            idempotent=True,
            json_body=body,
            headers={"Idempotency-Key": key},
        )
        answer = _json(response)
        if not response.is_success:
            raise _error(response)
        if not all(answer.get(name) for name in ("request_id", "status_url", "response_url")):
            raise APIError(
                response.status_code,
                f"the submit answer lacks request_id, status_url or response_url; got keys {sorted(answer)}",
                answer,
            )
        return Job(answer["request_id"], answer["status_url"], answer["response_url"], answer, self)

    def status(self, request_id: str) -> dict[str, Any]:
        """``GET /v2/requests/{id}/status``: ``status``, ``progress`` (0..1), ``queue_position``..."""
        return self._terminal_tolerant(self._url(f"/v2/requests/{request_id}/status"))

    def result(self, request_id: str) -> dict[str, Any]:
        """``GET /v2/requests/{id}``: the final body (``output`` URL and ``metrics`` when COMPLETED)."""
        return self._terminal_tolerant(self._url(f"/v2/requests/{request_id}"))

    def cancel(self, request_id: str) -> dict[str, Any]:
        """``POST /v2/requests/{id}/cancel``: stop the request (a no-op once it has finished)."""
        response = self._send("POST", self._url(f"/v2/requests/{request_id}/cancel"), idempotent=True)
        return _json(response)

    def wait(
        self,
        request_id: str,
        timeout: float = DEFAULT_WAIT_TIMEOUT_S,
        interval: float = DEFAULT_POLL_INTERVAL_S,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Poll until the request finishes; return the result body of a COMPLETED request.

        ``on_progress`` gets every status body. Raises ``InferenceFailed`` for FAILED and
        ``InferenceTimeout`` after ``timeout`` seconds (the request goes on: wait again by its id).
        """
        started = time.monotonic()
        while True:
            status = self.status(request_id)
            if on_progress is not None:
                on_progress(status)
            state = status.get("status")
            if state == "COMPLETED":
                return self.result(request_id)
            if state == "FAILED":
                raise InferenceFailed(request_id, str(status.get("error") or "no reason given"), status)
            elapsed = time.monotonic() - started
            if elapsed >= timeout:
                raise InferenceTimeout(request_id, elapsed)
            time.sleep(min(interval, timeout - elapsed))

    def run(
        self,
        params: AnimateParams | None = None,
        /,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT_S,
        interval: float = DEFAULT_POLL_INTERVAL_S,
        on_progress: ProgressCallback | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Submit and wait: the result body of the finished request."""
        job = self.submit(params, idempotency_key=idempotency_key, webhook_url=webhook_url, **fields)
        return job.wait(timeout=timeout, interval=interval, on_progress=on_progress)

    def run_sync(
        self, params: AnimateParams | None = None, /, *, timeout: float = 600.0, **fields: Any
    ) -> bytes:
        """``POST /v1/p-video-animate``: one blocking call that answers with the MP4 itself.

        Not repeated after a timeout or a 5xx (the server may be rendering it already); prefer
        ``run`` for anything long.
        """
        body = self._validated(params, fields).model_dump(mode="json")
        response = self._send(
            "POST",
            self._url(f"/v1/{MODEL}"),
            idempotent=False,
            json_body=body,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        if not response.is_success:
            raise _error(response)
        return response.content

    def events(self, request_id: str) -> Iterator[dict[str, Any]]:
        """``GET /v2/requests/{id}/events``: the status body each time the status, progress or queue
        position changes, then the result body of the finished request, as server-sent events.

        Ends after the result. A dropped stream is reopened (with ``Last-Event-ID``) within the
        client's retry budget; an expired request raises ``NotFound``.
        """
        url = self._url(f"/v2/requests/{request_id}/events")
        last_id: str | None = None
        finished = False
        reconnects = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            response = self._send("GET", url, idempotent=True, headers=headers, stream=True)
            broke: Exception | None = None
            try:
                for event in _sse(response.iter_lines()):
                    last_id = event.id or last_id
                    reconnects = 0  # the stream works: the retry budget is for consecutive failures
                    try:
                        body = json.loads(event.data)
                    except ValueError:
                        continue  # not one of our JSON bodies: nothing to report
                    if event.name == "error":
                        raise NotFound(404, str(body.get("error", "the request is gone")), body)
                    yield body
                    if event.name == "result":
                        return
                    finished = body.get("status") in TERMINAL
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                broke = exc
            finally:
                response.close()
            if finished and broke is None:
                return  # the server ended the stream after the final status (no separate result event)
            if reconnects >= self.max_retries:
                reason = f"broke off ({broke})" if broke else "ended before the request did"
                raise StillmotionError(f"the event stream of request {request_id} {reason}")
            reconnects += 1
            time.sleep(self._delay(reconnects, None))

    def upload(self, path: Path | str) -> str:
        """``POST /v2/uploads``: send a local photo or video; returns a URL the server takes as
        ``image`` or ``video`` (valid for a limited time, see the answer's ``expires_at``)."""
        from stillmotion.inputs import SNIFF_BYTES, sniff

        path = Path(path)
        if not path.is_file():
            raise StillmotionError(f"{path}: no such file")
        with path.open("rb") as handle:
            sniffed = sniff(handle.read(SNIFF_BYTES))
        content_type = sniffed.mime if sniffed is not None else "application/octet-stream"
        # Repeating an upload only leaves an unused copy that expires: safe to retry.
        response = self._send(
            "POST",
            self._url("/v2/uploads"),
            idempotent=True,
            file=path,
            headers={"Content-Type": content_type},
        )
        body = _json(response)
        if not response.is_success or not body.get("url"):
            raise _error(response)
        return str(body["url"])

    def download(self, result_or_url: dict[str, Any] | str, path: Path | str) -> Path:
        """Save an output (a result body's ``output``, or its URL) to ``path``, atomically: the file
        appears complete or not at all."""
        url = result_or_url.get("output") if isinstance(result_or_url, dict) else result_or_url
        if not url:
            raise StillmotionError("the result has no output to download (did the request complete?)")
        path = Path(path)
        fd, part = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                response = self._send("GET", str(url), idempotent=True, stream=True)
                try:
                    if not response.is_success:
                        response.read()
                        raise _error(response)
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                finally:
                    response.close()
            os.replace(part, path)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
        return path


@dataclass(frozen=True)
class _Event:
    name: str
    data: str
    id: str | None


def _sse(lines: Iterator[str]) -> Iterator[_Event]:
    """The events of a ``text/event-stream`` (WHATWG HTML §9.2.6): ``data`` lines joined with newlines,
    dispatched at a blank line, ``event`` naming it (``message`` if absent); comments (``:``) and
    ``retry`` skipped."""
    data: list[str] = []
    name = ""
    event_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield _Event(name or "message", "\n".join(data), event_id)
            data, name = [], ""
            continue
        field_name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field_name == "data":
            data.append(value)
        elif field_name == "event":
            name = value
        elif field_name == "id":
            event_id = value
    if data:
        yield _Event(name or "message", "\n".join(data), event_id)
