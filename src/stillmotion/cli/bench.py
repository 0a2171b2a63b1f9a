"""``stillmotion bench``: measure speed and memory (default), animation quality (``--quality``) or
the API under load (``--api``), print the results as JSON and optionally write them to a file."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click

from stillmotion.cli.errors import fail
from stillmotion.errors import InputError


def _machine() -> dict[str, object]:
    import os

    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


@click.command()
@click.option("--quality", is_flag=True, help="Measure animation quality instead of speed.")
@click.option("--api", is_flag=True, help="Measure status-poll latency under load on a live server.")
@click.option(
    "--seconds",
    type=float,
    default=12.0,
    show_default=True,
    help="Length of the driving clip (speed) or of the load (api).",
)
@click.option("--pollers", type=int, default=200, show_default=True, help="Concurrent pollers (--api).")
@click.option(
    "--driving",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --quality: drive the photo with this clip instead of the bundled one (one face, one shot).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON here (and side-by-side images next to it with --quality).",
)
def bench(
    quality: bool, api: bool, seconds: float, pollers: int, driving: Path | None, output: Path | None
) -> None:
    """Benchmark stillmotion on the bundled sample and print JSON."""
    results: object
    if driving is not None and not quality:
        fail("--driving: only with --quality (speed and the API are measured on the bundled sample)")
    if quality:
        from stillmotion.bench import quality as quality_bench

        try:
            results = quality_bench.run(output.parent if output else None, driving)
        except InputError as error:
            fail(str(error))
    elif api:
        from stillmotion.bench import api_load

        results = api_load.run(pollers=pollers, seconds=seconds)
    else:
        from stillmotion.bench import speed

        results = speed.run(seconds=seconds)
    document = {"machine": _machine(), "results": results}
    text = json.dumps(document, indent=2)
    if output is not None:
        output.write_text(text + "\n")
    click.echo(text)
