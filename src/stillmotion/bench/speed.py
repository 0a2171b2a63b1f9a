"""Speed and memory of the engine on the bundled sample, per configuration.

Each configuration renders in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its
own. The engine is imported before the clock starts, as a service worker's render children find it;
the import's own time is reported beside the render's. The driving clip is the sample looped back
and forth to ``seconds``, so per-frame numbers average over enough frames to be steady.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from stillmotion.engine.options import RenderOptions
from stillmotion.samples import ping_pong, sample_image, sample_video


@dataclass(frozen=True)
class SpeedConfig:
    name: str
    resolution: int
    turbo: bool
    driving_height: int | None = None
    """The driving clip scaled to this many lines (``None``: the sample's own 144): a phone's
    1080p clip costs decoding and tracking that the sample's tiny frames do not."""


CONFIGS = (
    SpeedConfig("720p", 720, False),
    SpeedConfig("720p-turbo", 720, True),
    SpeedConfig("1080p", 1080, False),
    SpeedConfig("1080p-turbo", 1080, True),
    SpeedConfig("720p-from-1080p", 720, False, driving_height=1080),
)


def measure(config: SpeedConfig, video: Path, output: Path) -> dict[str, object]:
    """Render the sample once with ``config`` in this process and report its numbers.

    The engine is imported first (``render.preload``), as a service worker does before it forks
    each render child: the wall time is the render's. A CLI run pays the import once more, reported
    apart as ``preload_seconds``."""
    from stillmotion.engine.pipeline import animate
    from stillmotion.render import preload

    start = time.perf_counter()
    preload()
    preloaded = time.perf_counter() - start
    start = time.perf_counter()
    report = animate(
        sample_image(), video, output, RenderOptions(resolution=config.resolution, turbo=config.turbo)
    )
    wall = time.perf_counter() - start
    frames = report.frames
    return {
        **asdict(config),
        "width": report.width,
        "height": report.height,
        "frames": frames,
        "output_seconds": round(report.duration, 3),
        "preload_seconds": round(preloaded, 3),
        "wall_seconds": round(wall, 3),
        "fps": round(frames / wall, 2),
        "seconds_per_output_second": round(wall / report.duration, 3),
        "ms_per_frame": {k: round(1000 * v / frames, 2) for k, v in report.stage_seconds.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run(seconds: float = 12.0, configs: tuple[SpeedConfig, ...] = CONFIGS) -> list[dict[str, object]]:
    """Every configuration, each in its own subprocess, on a ``seconds``-long driving clip."""
    results = []
    with tempfile.TemporaryDirectory(prefix="stillmotion-bench-") as work:
        clips: dict[int | None, Path] = {}
        for config in configs:
            height = config.driving_height
            if height not in clips:
                named = Path(work) / f"driving-{height or 'sample'}.mp4"
                clips[height] = ping_pong(sample_video(), named, seconds, height)
            clip = clips[height]
            out = Path(work) / f"{config.name}.mp4"
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "stillmotion.bench.speed",
                    json.dumps(asdict(config)),
                    str(clip),
                    str(out),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    return results


if __name__ == "__main__":
    chosen = SpeedConfig(**json.loads(sys.argv[1]))
    print(json.dumps(measure(chosen, Path(sys.argv[2]), Path(sys.argv[3]))))
