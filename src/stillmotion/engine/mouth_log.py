"""Each driving frame's mouth (``mouth.DrivingMouth``) kept on disk from pass 1 to pass 2.

Pass 2 needs, of every driving frame, only its landmarks and what the inner mouth draws from it:
the pixels round the mouth and the skin colour. Kept as pass 1 tracks, they spare pass 2 decoding
the video again, which for a phone's 1080p clip costs as much CPU as tracking it. A window is at
most 96 px on a side (27 KB a frame), on disk like the landmarks (``landmark_log``); only each
record's offset is held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stillmotion.engine.disk_log import DiskLog
from stillmotion.engine.mouth import DrivingMouth

#: height, width, origin x and y, scale x and y, skin R, G and B (float32), then the pixels.
_HEADER = 9
_HEADER_BYTES = _HEADER * 4


class MouthLog(DiskLog):
    """Per-frame driving mouths (``None`` where the face was lost), read back by index."""

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__("stillmotion-mouths-", directory)
        self._offsets: list[int] = []  # -1 for a lost face
        self._end = 0

    @property
    def count(self) -> int:
        return len(self._offsets)

    def append(self, mouth: DrivingMouth | None) -> None:
        if mouth is None:
            self._offsets.append(-1)
            return
        height, width = mouth.pixels.shape[:2]
        header = np.array([height, width, *mouth.origin, *mouth.scale, *mouth.skin], np.float32)
        self._file.seek(self._end)
        self._file.write(header.tobytes())
        self._file.write(np.ascontiguousarray(mouth.pixels, np.uint8).tobytes())
        self._offsets.append(self._end)
        self._end += _HEADER_BYTES + height * width * 3

    def clear(self) -> None:
        self._offsets.clear()
        self._end = 0

    def __getitem__(self, index: int) -> DrivingMouth | None:
        if not 0 <= index < self.count:
            raise IndexError(index)
        offset = self._offsets[index]
        if offset < 0:
            return None
        self._file.seek(offset)
        header = np.frombuffer(self._file.read(_HEADER_BYTES), np.float32).astype(np.float64)
        height, width = int(header[0]), int(header[1])
        pixels = np.frombuffer(self._file.read(height * width * 3), np.uint8).reshape(height, width, 3)
        return DrivingMouth(pixels, header[2:4], header[4:6], header[6:9])
