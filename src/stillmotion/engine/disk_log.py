"""What the two passes' on-disk logs share: an anonymous temporary file, gone on close, holding one
record per driving frame."""

from __future__ import annotations

import abc
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class DiskLog(abc.ABC):
    """An append-only log of per-frame records (``None`` where the face was lost) in an anonymous
    temporary file (``_file``), so memory does not grow with the video's length; the file goes away
    on close. A context manager."""

    count: int
    """How many records the log holds."""

    def __init__(self, prefix: str, directory: Path | None = None) -> None:
        # Closed by close()/__exit__; the log outlives any single block of its owner.
        self._file = tempfile.TemporaryFile(dir=directory, prefix=prefix)  # noqa: SIM115

    @abc.abstractmethod
    def append(self, record: Any) -> None:
        """Add the next frame's record."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Any:
        """The record of frame ``index``."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every record (the file's space is reused)."""

    def extend(self, other: Self) -> None:
        """Append every record of ``other``, in order."""
        for index in range(other.count):
            self.append(other[index])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
