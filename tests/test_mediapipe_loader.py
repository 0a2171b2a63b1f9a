"""MediaPipe imports without the plotting and audio modules the engine never uses, and they still
work for whoever uses them."""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import sys
import stillmotion.render
stillmotion.render.preload()
assert "mediapipe" in sys.modules
print("skipped", sorted(name for name in ("matplotlib", "sounddevice") if name in sys.modules))
from mediapipe.python.solutions import drawing_utils
# MediaPipe's own 3D plot helper still reaches the real pyplot, and so does a later import.
print("pyplot", drawing_utils.plt.figure.__module__)
import matplotlib.pyplot
print("same", matplotlib.pyplot.figure is drawing_utils.plt.figure, type(matplotlib.pyplot).__name__)
"""


def test_preloading_imports_mediapipe_but_not_matplotlib_until_it_is_used():
    result = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["skipped []", "pyplot matplotlib.pyplot", "same True module"]
