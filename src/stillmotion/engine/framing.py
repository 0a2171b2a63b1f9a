"""The output frame: its size from the requested resolution and the photo's aspect, and the photo
fitted to it once, at full output resolution (never rendered small and upscaled)."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

#: The widest aspect an output may have (16:9 either way); wider photos are cropped to it.
MAX_ASPECT = Fraction(16, 9)


def _even(value: float | Fraction) -> int:
    return max(2, round(value / 2) * 2)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``short_side``, the photo's aspect (up to 16:9), even."""
    long_max = _even(short_side * MAX_ASPECT)
    if width >= height:
        return min(_even(short_side * width / height), long_max), short_side
    return short_side, min(_even(short_side * height / width), long_max)


def crop_window(width: int, height: int, centre: tuple[float, float]) -> tuple[int, int, int, int]:
    """(x, y, w, h): the largest window of aspect at most 16:9, centred on ``centre`` where it can."""
    if width >= height:
        w, h = min(width, int(height * MAX_ASPECT)), height
    else:
        w, h = width, min(height, int(width * MAX_ASPECT))
    x = int(np.clip(round(centre[0] - w / 2), 0, width - w))
    y = int(np.clip(round(centre[1] - h / 2), 0, height - h))
    return x, y, w, h


def fit_photo(photo: np.ndarray, size: tuple[int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """The photo cropped to ``window`` and resized to ``size``: area averaging when shrinking (no
    aliasing), Lanczos when enlarging (sharpest)."""
    x, y, w, h = window
    crop = photo[y : y + h, x : x + w]
    interpolation = cv2.INTER_AREA if size[0] < w else cv2.INTER_LANCZOS4
    return np.ascontiguousarray(cv2.resize(crop, size, interpolation=interpolation))
