"""The one easing curve the engine blends with."""

from __future__ import annotations

import numpy as np


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """0 below 0, 1 above 1, and ``3x² - 2x³`` between: a ramp whose ends have no kink, so what it
    eases (a lid's pull on the skin, a lost face's return to rest) starts and stops without a jolt."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
