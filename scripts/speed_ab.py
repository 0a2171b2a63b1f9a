"""Interleaved speed A/B: this checkout's engine against an older commit's, on the same host.

    .venv/bin/python scripts/speed_ab.py REV [--runs 3] [--config 720p]

The host is shared and noisy (docs/BENCHMARKS.md), so a change is judged by alternating renders of
the old and the new code, wall and CPU seconds side by side. Each render runs in its own process with
``PYTHONPATH`` pointing at the code under test: ``stillmotion.bench.speed`` renders in a subprocess,
which would otherwise import this checkout's (editable) package whichever side it was meant to be.
Wall seconds are each side's own benchmark's (before 455e873 they include importing MediaPipe); CPU
seconds are the whole render process's, comparable across any two commits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_RENDER = """
import json, sys
from stillmotion.bench import speed
config = next(c for c in speed.CONFIGS if c.name == sys.argv[1])
print(json.dumps(speed.run(12.0, (config,))[0]))
"""


def _render(source: Path, config: str) -> tuple[float, float, str]:
    """One render with the package under ``source``: (wall seconds, CPU seconds, the module's path)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    check = "import stillmotion, sys; sys.stdout.write(stillmotion.__file__)"
    module = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", _RENDER, config], env=env, capture_output=True, text=True, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["wall_seconds"]), cpu, module.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the older commit to compare against (any git revision)")
    parser.add_argument("--runs", type=int, default=3, help="renders of each side (default 3)")
    parser.add_argument("--config", default="720p", help="a speed configuration's name (default 720p)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stillmotion-ab-") as work:
        old = Path(work) / "old"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(old), args.rev], check=True)
        try:
            sides = {"new": ROOT / "src", args.rev: old / "src"}
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for run in range(args.runs):
                for name, source in sides.items():
                    wall, cpu, module = _render(source, args.config)
                    if not module.startswith(str(source)):
                        raise SystemExit(f"{name}: imported {module}, not the code under {source}")
                    times[name].append((wall, cpu))
                    print(f"run {run + 1} {name:>12}: wall {wall:6.2f} s  CPU {cpu:6.2f} s", flush=True)
            for name, pairs in times.items():
                walls = ", ".join(f"{w:.2f}" for w, _ in pairs)
                cpus = ", ".join(f"{c:.1f}" for _, c in pairs)
                print(f"{name:>12}: wall {walls} s (CPU {cpus} s)")
        finally:
            subprocess.run([*git, "remove", "--force", str(old)], check=False)


if __name__ == "__main__":
    main()
