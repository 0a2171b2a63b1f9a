"""API keys, their permissions, credits and request limits.

* A key is a high-entropy bearer token (``sm_`` + 256 random bits) sent in ``x-api-key``. Only its
  SHA-256 is stored: with that much entropy a slow password hash adds nothing, and a fast lookup keeps
  status polls cheap. ``keys list`` shows a short prefix to tell keys apart.
* A key may be limited to models and to scopes (``submit``, ``read``, ``upload``).
* Credits: a submit *holds* the estimated cost (``pricing.py``) by moving it out of the balance; the
  request's end *settles* the hold (the real cost is kept, the rest returned; nothing is kept for a
  FAILED or cancelled request). Settling deletes the hold row in the same transaction that refunds it,
  so settling twice is harmless, and holds left by a crash are settled later by the sweeper.
* Rate limit (requests per window, counted on submits and uploads) and concurrency limit (unfinished
  requests) per key; both answer 429.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from stillmotion.service.db import Database

SCOPES: tuple[str, ...] = ("submit", "read", "upload")
"""``submit``: create and cancel requests; ``read``: status, results, events; ``upload``: ``/v2/uploads``."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    token_sha256    TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    credits         REAL NOT NULL,            -- available balance, holds already taken out
    models          TEXT,                     -- JSON list, NULL = every model
    scopes          TEXT NOT NULL,            -- JSON list
    rate_count      INTEGER,                  -- NULL = unlimited
    rate_window_s   REAL,
    concurrency     INTEGER,                  -- NULL = unlimited
    webhook_secret  TEXT NOT NULL,
    created_at      REAL NOT NULL,
    revoked_at      REAL
);
CREATE TABLE IF NOT EXISTS credit_holds (
    request_id  TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    amount      REAL NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS credit_holds_by_key ON credit_holds (key_id);
"""

_WINDOWS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


@dataclass(frozen=True)
class RateLimit:
    count: int
    window_s: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"30/min"``, ``"5/s"``, ``"1000/h"`` or a bare ``"30"`` (per minute)."""
        match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*([a-z]+))?\s*", text.lower())
        if not match or int(match.group(1)) < 1 or (match.group(2) or "min") not in _WINDOWS:
            raise ValueError(f"rate limit {text!r}: use N/s, N/min or N/h with N >= 1 (e.g. 30/min)")
        return cls(int(match.group(1)), _WINDOWS[match.group(2) or "min"])

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.window_s, f"{self.window_s:g}s")
        return f"{self.count}/{unit}"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    credits: float
    models: tuple[str, ...] | None
    scopes: frozenset[str]
    rate_limit: RateLimit | None
    concurrency: int | None
    webhook_secret: str
    """Standard Webhooks secret (``whsec_`` + base64) that signs this key's webhooks."""
    created_at: float
    revoked_at: float | None

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def allows_scope(self, scope: str) -> bool:
        return scope in self.scopes


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """Keys and credit holds in the service's SQLite file (the CLI and the server share it)."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path)
        self.db.migrate(SCHEMA)

    @staticmethod
    def _key(r: sqlite3.Row) -> ApiKey:
        return ApiKey(
            id=r["id"],
            name=r["name"],
            prefix=r["prefix"],
            credits=r["credits"],
            models=tuple(json.loads(r["models"])) if r["models"] else None,
            scopes=frozenset(json.loads(r["scopes"])),
            rate_limit=RateLimit(r["rate_count"], r["rate_window_s"]) if r["rate_count"] else None,
            concurrency=r["concurrency"],
            webhook_secret=r["webhook_secret"],
            created_at=r["created_at"],
            revoked_at=r["revoked_at"],
        )

    # -- administration (``stillmotion keys``) ---------------------------------------------------
    def create(
        self,
        name: str,
        credits: float,
        *,
        models: list[str] | None = None,
        scopes: list[str] | None = None,
        rate_limit: RateLimit | None = None,
        concurrency: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns it with its token, which is shown this once and never stored."""
        scopes = list(SCOPES) if scopes is None else scopes
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        token = "sm_" + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(4)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        row = self.db.conn.execute(
            "INSERT INTO api_keys (id, name, token_sha256, prefix, credits, models, scopes, rate_count, "
            "rate_window_s, concurrency, webhook_secret, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                key_id,
                name,
                token_digest(token),
                token[:11],
                float(credits),
                json.dumps(models) if models else None,
                json.dumps(sorted(set(scopes))),
                rate_limit.count if rate_limit else None,
                rate_limit.window_s if rate_limit else None,
                concurrency,
                secret,
                time.time(),
            ),
        ).fetchone()
        return self._key(row), token

    def list(self) -> list[tuple[ApiKey, float]]:
        """Every key with the credits currently held by its unfinished requests."""
        rows = self.db.conn.execute(
            "SELECT k.*, COALESCE((SELECT SUM(amount) FROM credit_holds h WHERE h.key_id = k.id), 0) AS held "
            "FROM api_keys k ORDER BY created_at"
        ).fetchall()
        return [(self._key(r), r["held"]) for r in rows]

    def find(self, ref: str) -> ApiKey | None:
        """A key by its id (``key_...``), its token, or an unambiguous token prefix."""
        rows = self.db.conn.execute(
            "SELECT * FROM api_keys WHERE id = ? OR token_sha256 = ? "
            "OR (length(?) >= 6 AND prefix LIKE ? || '%')",
            (ref, token_digest(ref), ref, ref),
        ).fetchall()
        return self._key(rows[0]) if len(rows) == 1 else None

    def add_credits(self, key_id: str, amount: float) -> ApiKey:
        row = self.db.conn.execute(
            "UPDATE api_keys SET credits = credits + ? WHERE id = ? RETURNING *", (amount, key_id)
        ).fetchone()
        if row is None:
            raise KeyError(key_id)
        return self._key(row)

    def revoke(self, key_id: str) -> ApiKey:
        row = self.db.conn.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *",
            (time.time(), key_id),
        ).fetchone()
        if row is None:
            raise KeyError(key_id)
        return self._key(row)

    # -- per request -----------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> ApiKey | None:
        """The live key for an ``x-api-key`` value, or ``None``. One indexed lookup, no cache, so a
        revoke takes effect on the next request."""
        if not token:
            return None
        row = self.db.conn.execute(
            "SELECT * FROM api_keys WHERE token_sha256 = ? AND revoked_at IS NULL", (token_digest(token),)
        ).fetchone()
        return None if row is None else self._key(row)

    def get(self, key_id: str) -> ApiKey | None:
        row = self.db.conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else self._key(row)

    def hold(self, key_id: str, request_id: str, amount: float) -> bool:
        """Move ``amount`` from the balance into a hold for the request; ``False`` if it is not there."""
        with self.db.transaction() as conn:
            taken = conn.execute(
                "UPDATE api_keys SET credits = credits - ? WHERE id = ? AND credits >= ?",
                (amount, key_id, amount),
            ).rowcount
            if not taken:
                return False
            conn.execute(
                "INSERT INTO credit_holds (request_id, key_id, amount, created_at) VALUES (?, ?, ?, ?)",
                (request_id, key_id, amount, time.time()),
            )
            return True

    def raise_hold(self, request_id: str, amount: float) -> tuple[bool, float]:
        """Grow the request's hold to ``amount`` (once the real length of the video is known).
        Returns ``(ok, available)``: ``ok`` is ``False`` if the balance cannot cover the difference."""
        with self.db.transaction() as conn:
            hold = conn.execute(
                "SELECT key_id, amount FROM credit_holds WHERE request_id = ?", (request_id,)
            ).fetchone()
            if hold is None:
                return False, 0.0
            extra = amount - hold["amount"]
            (available,) = conn.execute(
                "SELECT credits FROM api_keys WHERE id = ?", (hold["key_id"],)
            ).fetchone()
            if extra <= 0:
                return True, available
            if available < extra:
                return False, available + hold["amount"]
            conn.execute("UPDATE api_keys SET credits = credits - ? WHERE id = ?", (extra, hold["key_id"]))
            conn.execute("UPDATE credit_holds SET amount = ? WHERE request_id = ?", (amount, request_id))
            return True, available - extra

    def settle(self, request_id: str, charge: float) -> None:
        """End the request's hold: keep ``charge`` and return the rest. Idempotent."""
        with self.db.transaction() as conn:
            hold = conn.execute(
                "DELETE FROM credit_holds WHERE request_id = ? RETURNING key_id, amount", (request_id,)
            ).fetchone()
            if hold is not None:
                conn.execute(
                    "UPDATE api_keys SET credits = credits + ? - ? WHERE id = ?",
                    (hold["amount"], charge, hold["key_id"]),
                )

    def open_holds(self) -> list[tuple[str, float]]:
        """``(request_id, created_at)`` of every hold not settled yet (for the sweeper's reconciliation)."""
        rows = self.db.conn.execute("SELECT request_id, created_at FROM credit_holds").fetchall()
        return [(r["request_id"], r["created_at"]) for r in rows]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    """Seconds until a slot frees up (the ``Retry-After`` when not allowed)."""

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers (the widespread de-facto convention; Reset in seconds from now)."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(max(0, round(self.reset_s + 0.499))),
        }


class RateLimiter:
    """Sliding-window log per key, in the API process's memory.

    Exact (no burst at window edges) and small (at most ``count`` timestamps per key). It is per API
    process, which is one per service here; a multi-process API would keep it in the shared store.
    Only used from the event loop thread, so it needs no lock.
    """

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key_id: str, limit: RateLimit, now: float | None = None) -> RateDecision:
        now = time.monotonic() if now is None else now
        hits = self._hits.setdefault(key_id, deque())
        while hits and hits[0] <= now - limit.window_s:
            hits.popleft()
        if len(hits) >= limit.count:
            return RateDecision(False, limit.count, 0, hits[0] + limit.window_s - now)
        hits.append(now)
        reset = hits[0] + limit.window_s - now
        return RateDecision(True, limit.count, limit.count - len(hits), reset)
