"""Artifact storage: rendered videos and uploaded inputs, behind one small interface.

``LocalArtifactStore`` keeps files in a folder and hands out *signed, expiring* URLs to them: the URL
itself is the credential (like an S3 presigned URL), so a browser or ``curl`` can download the output
without our API key. An S3-compatible implementation can implement ``ArtifactStore`` with real
presigned URLs; the API then needs no file route.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import mimetypes
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import parse_qs, quote, urlsplit

#: Route under which the local store's files are served (``app.py``).
FILES_PREFIX = "/v2/files/"

# Names are ours (``outputs/<id>.mp4``, ``uploads/<uuid>.<ext>``): a strict shape, so a name taken from
# a URL can never climb out of the store's folder.
_NAME = re.compile(r"^[a-z]+/[A-Za-z0-9_-]{1,80}(\.[a-z0-9]{1,5})?$")

#: File extensions of the media types we take as uploads and produce.
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/mpeg": ".mpg",
}


def accepted_types() -> list[str]:
    return sorted(_EXTENSIONS)


class ArtifactNotFound(Exception):
    pass


class ArtifactStore(Protocol):
    """Where outputs and uploads live. Names are relative, like ``outputs/<request id>.mp4``."""

    def put(self, name: str, source: Path) -> int:
        """Store the file at ``source`` (moved or copied) under ``name``; returns its size in bytes."""
        ...

    def open(self, name: str) -> BinaryIO:
        """The stored bytes; raises ``ArtifactNotFound``."""
        ...

    def url(self, name: str, expires_at: float, base_url: str) -> str:
        """An absolute URL that downloads the file without other credentials until ``expires_at``."""
        ...

    def name_from_url(self, url: str) -> str | None:
        """The artifact name if ``url`` is one of our own unexpired, correctly signed URLs, else ``None``.
        Lets a worker read an uploaded input from storage instead of fetching it over HTTP."""
        ...

    def delete(self, name: str) -> None:
        """Remove the file; no error if it is already gone (sweeps may race)."""
        ...

    def purge(self, prefix: str, older_than: float) -> int:
        """Delete files under ``prefix`` stored before ``older_than`` (Unix time); returns how many."""
        ...


class LocalArtifactStore:
    """Files under ``root``; URLs ``{base}/v2/files/{name}?expires=...&signature=...`` (HMAC-SHA256)."""

    def __init__(self, root: Path, signing_key: bytes) -> None:
        self.root = root
        self._key = signing_key
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def new_name(prefix: str, extension: str) -> str:
        return f"{prefix}/{uuid.uuid4().hex}{extension}"

    def path(self, name: str) -> Path:
        """The file of ``name`` (it may not exist). Raises ``ArtifactNotFound`` for an impossible name."""
        if not _NAME.match(name):
            raise ArtifactNotFound(name)
        return self.root / name

    def content_type(self, name: str) -> str:
        return mimetypes.guess_type(name)[0] or "application/octet-stream"

    def put(self, name: str, source: Path) -> int:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target, then rename: a reader never sees half a file (POSIX rename is atomic).
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            shutil.move(source, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target.stat().st_size

    def open(self, name: str) -> BinaryIO:
        try:
            return self.path(name).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(name) from None

    def delete(self, name: str) -> None:
        with contextlib.suppress(ArtifactNotFound):
            self.path(name).unlink(missing_ok=True)

    def purge(self, prefix: str, older_than: float) -> int:
        count = 0
        folder = self.root / prefix
        if not folder.is_dir():
            return 0
        for entry in os.scandir(folder):
            try:
                if entry.is_file() and entry.stat().st_mtime < older_than:
                    os.unlink(entry.path)
                    count += 1
            except FileNotFoundError:
                continue
        return count

    # -- signed URLs -----------------------------------------------------------------------------
    def _signature(self, name: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{name}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url(self, name: str, expires_at: float, base_url: str) -> str:
        expires = int(expires_at)
        return (
            f"{base_url.rstrip('/')}{FILES_PREFIX}{quote(name)}"
            f"?expires={expires}&signature={self._signature(name, expires)}"
        )

    def verify(self, name: str, expires: str | None, signature: str | None, now: float | None = None) -> bool:
        """Whether ``(expires, signature)`` is our valid, unexpired signature of ``name``."""
        if not expires or not signature or not expires.isdigit():
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._signature(name, int(expires)), signature)

    def name_from_url(self, url: str) -> str | None:
        # Neither the host nor a path prefix is checked: behind a proxy or a public base URL
        # (``https://example.com/api/v2/files/...``) both differ from ours, and the HMAC alone proves
        # that we issued this URL.
        parts = urlsplit(url)
        _, found, name = parts.path.partition(FILES_PREFIX)
        if parts.scheme not in ("http", "https") or not found:
            return None
        query = parse_qs(parts.query)
        expires = query.get("expires", [None])[0]
        signature = query.get("signature", [None])[0]
        if not _NAME.match(name) or not self.verify(name, expires, signature):
            return None
        return name
