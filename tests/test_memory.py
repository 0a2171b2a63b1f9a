"""Frames are streamed: peak memory does not grow with the length of the driving video (issue 2)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from media_factory import looped_video

_MEASURE = """
import resource, runpy, sys
sys.argv = ["stillmotion", *sys.argv[1:]]
try:
    runpy.run_module("stillmotion", run_name="__main__")
except SystemExit as exit_:
    if exit_.code:
        raise
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _peak_rss_mb(photo: Path, video: Path, out: Path) -> float:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            "animate",
            "--image",
            str(photo),
            "--video",
            str(video),
            "--output",
            str(out),
            "--turbo",
            "--disable-safety-checker",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("peak_rss_kb"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_peak_memory_is_flat_from_15_seconds_to_3_minutes(photo, driving, tmp_path):
    short = looped_video(driving, tmp_path / "short.mp4", seconds=15)
    long = looped_video(driving, tmp_path / "long.mp4", seconds=180)
    short_mb = _peak_rss_mb(photo, short, tmp_path / "short-out.mp4")
    long_mb = _peak_rss_mb(photo, long, tmp_path / "long-out.mp4")
    # 12x the frames; a render that kept frames (2 MB each at 720p) would grow by gigabytes.
    assert long_mb - short_mb < 40, (short_mb, long_mb)


_FAULTS = """
import resource, sys, threading
import numpy as np
from stillmotion.engine.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def frames():  # a render thread's pattern: buffers of 0.2 to 8 MB, allocated, written, freed
    rng = np.random.default_rng(0)
    for _ in range(40):
        buffers = [np.ones(int(size), np.uint8) for size in rng.integers(200_000, 8_000_000, 10)]
        for i in rng.permutation(len(buffers)):
            buffers[i] = None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
thread = threading.Thread(target=frames)  # one, so the pattern (and the arena it uses) is fixed
thread.start()
thread.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's mallopt")
def test_freed_frame_buffers_are_reused_instead_of_faulted_in_again():
    # Each fault is a fresh 4 KB page the kernel zeroes: untuned, freed buffers go back to the
    # kernel and come back as new pages (about 6x the faults, measured).
    assert _page_faults("tuned") * 3 < _page_faults("default")
