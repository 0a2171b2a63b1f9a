"""What the two passes' on-disk logs share: an anonymous temporary file, gone on close."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self


class DiskLog:
    """A log of per-frame records in an anonymous temporary file (``_file``), so memory does not
    grow with the video's length; the file goes away on close. A context manager."""

    def __init__(self, prefix: str, directory: Path | None = None) -> None:
        # Closed by close()/__exit__; the log outlives any single block of its owner.
        self._file = tempfile.TemporaryFile(dir=directory, prefix=prefix)  # noqa: SIM115

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
