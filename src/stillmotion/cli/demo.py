"""``stillmotion demo``: animate the bundled sample (astronaut.png driven by carphone) into an MP4."""

from __future__ import annotations

from pathlib import Path

import click

from stillmotion.cli.animate import animate


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("out/sample.mp4"),
    show_default=True,
    help="Where to write the MP4.",
)
@click.option("--resolution", type=click.Choice(["720p", "1080p"]), default="720p", show_default=True)
@click.pass_context
def demo(ctx: click.Context, output: Path, resolution: str) -> None:
    """Animate the bundled sample photo with the bundled talking-man clip; print where it is."""
    from stillmotion.samples import sample_image, sample_video

    output.parent.mkdir(parents=True, exist_ok=True)
    ctx.invoke(
        animate, image=str(sample_image()), video=str(sample_video()), output=output, resolution=resolution
    )
