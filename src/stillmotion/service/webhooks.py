"""Webhooks: the final result body POSTed to the request's ``webhook_url``, signed per Standard Webhooks
(https://www.standardwebhooks.com, spec v1), retried with exponential backoff.

Headers of every delivery::

    webhook-id: msg_...            the same on every retry of one message (receivers dedupe on it)
    webhook-timestamp: 1700000000  Unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>

The secret is per API key (``whsec_`` + base64 of 24 random bytes; the HMAC key is the decoded bytes),
printed by ``stillmotion keys create`` and ``stillmotion keys webhook-secret``. Deliveries live in the
job store's outbox (``jobs.WebhookOutbox``), written in the same transaction that finishes the job, so a
restart neither loses nor duplicates the decision to send one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from stillmotion.inputs import FetchPolicy, IPAddress, pinned_requests, refusal
from stillmotion.service.auth import KeyStore
from stillmotion.service.jobs import Delivery, JobStore, WebhookOutbox
from stillmotion.service.schemas import result_body
from stillmotion.service.storage import ArtifactStore

log = logging.getLogger(__name__)

SIGNATURE_VERSION = "v1"
#: Receivers should refuse a timestamp further than this from their clock (replay protection).
DEFAULT_TOLERANCE_S = 300


def _secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    mac = hmac.new(_secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode()}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Receiver-side check (the snippet in ``docs/API.md`` does the same without stillmotion).

    ``headers`` must be case-insensitive or lower-case. Accepts any one of the space-separated
    signatures (the spec allows several during secret rotation)."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


class UnsafeTarget(Exception):
    pass


def check_target(url: str, policy: FetchPolicy) -> list[IPAddress]:
    """Refuse webhook URLs that lead into our own network (SSRF), with the input fetcher's address rules
    and allow list; returns the vetted addresses, which the delivery then connects to (so a DNS answer
    that changes afterwards is never used). Raises ``UnsafeTarget``. Resolves the host name, so call
    it off the event loop."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeTarget(f"{url!r} is not an http(s) URL")
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"the host {host} could not be resolved ({exc})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        why = refusal(address)
        if why is not None and not policy.allows(host, address):
            raise UnsafeTarget(f"{host} resolves to {why} ({address}), which is refused")
        if address not in addresses:
            addresses.append(address)
    return addresses


def backoff_s(attempts_made: int, base_s: float) -> float:
    """Delay before the next attempt after ``attempts_made`` failed ones: base, 2×base, 4×base ..."""
    return base_s * (2 ** max(attempts_made - 1, 0))


async def _post_pinned(
    client: httpx.AsyncClient, url: str, addresses: list[IPAddress], **options: Any
) -> httpx.Response:
    """POST to the first of the vetted ``addresses`` that accepts a connection."""
    target = httpx.URL(url)
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    last: httpx.ConnectError | None = None
    for request in pinned_requests(client, "POST", target, host, addresses, **options):
        try:
            return await client.send(request)
        except httpx.ConnectError as exc:
            last = exc  # the host's next address
    raise last if last is not None else httpx.ConnectError(f"no address to connect to for {host}")


class WebhookDispatcher:
    """Delivers due webhooks from the outbox; runs as a task in the API process."""

    def __init__(
        self,
        outbox: WebhookOutbox,
        jobs: JobStore,
        keys: KeyStore,
        artifacts: ArtifactStore,
        *,
        policy: FetchPolicy,
        max_attempts: int,
        backoff_base_s: float,
        timeout_s: float,
    ) -> None:
        self.outbox = outbox
        self.jobs = jobs
        self.keys = keys
        self.artifacts = artifacts
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.timeout_s = timeout_s

    async def run(self, poll_s: float) -> None:
        # trust_env=False: a proxy from the environment would bypass the address checks.
        async with httpx.AsyncClient(
            timeout=self.timeout_s, follow_redirects=False, trust_env=False
        ) as client:
            while True:
                try:
                    await self.deliver_due(client)
                except Exception:  # keep delivering whatever one round's failure was
                    log.exception("webhook round failed")
                await asyncio.sleep(poll_s)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        due = self.outbox.due_deliveries(time.time(), limit=32)
        await asyncio.gather(*(self._deliver(client, delivery) for delivery in due))
        return len(due)

    def _body(self, delivery: Delivery) -> bytes | None:
        if delivery.body is not None:
            return delivery.body
        job = self.jobs.get(delivery.job_id)
        if job is None:
            return None
        return json.dumps(result_body(job, self.artifacts, job.base_url), separators=(",", ":")).encode()

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        body = self._body(delivery)
        key = self.keys.get(delivery.key_id)
        if body is None or key is None:
            self.outbox.record_attempt(
                delivery.id,
                body=body or b"",
                delivered=False,
                next_attempt_at=None,
                error="the request or its key no longer exists",
            )
            return
        error: str | None = None
        status = 0
        try:
            addresses = await asyncio.to_thread(check_target, delivery.url, self.policy)
            timestamp = int(time.time())
            response = await _post_pinned(
                client,
                delivery.url,
                addresses,
                content=body,
                headers={
                    "content-type": "application/json",
                    "user-agent": "stillmotion-webhooks",
                    "webhook-id": delivery.id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(key.webhook_secret, delivery.id, timestamp, body),
                },
            )
            status = response.status_code
            if 200 <= status < 300:
                self.outbox.record_attempt(
                    delivery.id, body=body, delivered=True, next_attempt_at=None, error=None
                )
                return
            error = f"HTTP {status}"
        except UnsafeTarget as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = delivery.attempts + 1
        # 410 Gone: the receiver tells us to stop (Standard Webhooks "disable the endpoint").
        give_up = attempts >= self.max_attempts or status == 410
        next_at = None if give_up else time.time() + backoff_s(attempts, self.backoff_base_s)
        log.info(
            "webhook %s to %s failed (%s); %s",
            delivery.id,
            delivery.url,
            error,
            "giving up" if next_at is None else f"retry in {next_at - time.time():.0f} s",
        )
        self.outbox.record_attempt(
            delivery.id, body=body, delivered=False, next_attempt_at=next_at, error=error
        )
