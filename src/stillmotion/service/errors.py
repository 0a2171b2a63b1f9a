"""HTTP errors of the API: a status code (RFC 9110 §15) and one sentence in ``{"error": "..."}``.

The codes are the hosted API's (400, 401, 403, 404, 406, 422, 429, 500, 502, 504) plus 409 for a
reused ``Idempotency-Key``, 413 for an oversized upload and 416 for an unsatisfiable range.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised anywhere in a request; ``app.py`` turns it into the JSON error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}
