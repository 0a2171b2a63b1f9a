"""Driving landmarks kept on disk between the two passes over the video, so memory does not grow
with the video's length (a 10-minute clip at 30 fps is about 100 MB of landmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stillmotion.engine.disk_log import DiskLog
from stillmotion.engine.face_model import N_LANDMARKS

_RECORD = (N_LANDMARKS, 3)
_RECORD_BYTES = N_LANDMARKS * 3 * 4


class LandmarkLog(DiskLog):
    """Per-frame landmarks (``None`` where the face was lost), read back in order or by index, and
    rewritten by index. Stored as float32 with NaN marking a lost face."""

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__("stillmotion-landmarks-", directory)
        self.count = 0

    def append(self, landmarks: np.ndarray | None) -> None:
        self.count += 1
        self[self.count - 1] = landmarks

    def clear(self) -> None:
        self.count = 0

    def __setitem__(self, index: int, landmarks: np.ndarray | None) -> None:
        if not 0 <= index < self.count:
            raise IndexError(index)
        record = np.full(_RECORD, np.nan, np.float32) if landmarks is None else landmarks.astype(np.float32)
        self._file.seek(index * _RECORD_BYTES)
        self._file.write(record.tobytes())

    def __getitem__(self, index: int) -> np.ndarray | None:
        if not 0 <= index < self.count:
            raise IndexError(index)
        self._file.seek(index * _RECORD_BYTES)
        record = np.frombuffer(self._file.read(_RECORD_BYTES), np.float32).reshape(_RECORD)
        return None if np.isnan(record[0, 0]) else record.astype(np.float64)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[np.ndarray | None]:
        for index in range(self.count):
            yield self[index]
