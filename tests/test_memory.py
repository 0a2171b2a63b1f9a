"""Frames are streamed: peak memory does not grow with the length of the driving video (issue 2)."""

from __future__ import annotations

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
