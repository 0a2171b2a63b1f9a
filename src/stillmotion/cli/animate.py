"""``stillmotion animate``: render locally, or on a server with ``--server``.

The options are generated from ``AnimateParams``, the request model the HTTP API and the SDK use, so
every API field has its option (``target_fps`` is ``--target-fps``) with the same default and choices.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import click
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from stillmotion.cli.errors import EXIT_INTERNAL, fail
from stillmotion.errors import InputError, StillmotionError
from stillmotion.params import AnimateParams, describe_validation_error

#: Fields given as their own required options rather than generated ones.
_SOURCES = ("image", "video")


def _option_for(name: str, field: FieldInfo) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    flag = "--" + name.replace("_", "-")
    help_text = field.description or ""
    annotation = field.annotation
    if annotation is bool:
        if field.default:
            return click.option(
                f"{flag}/--no-{flag[2:]}", name, default=True, show_default=True, help=help_text
            )
        return click.option(flag, name, is_flag=True, default=False, help=help_text)
    if get_origin(annotation) is Literal:
        return click.option(
            flag,
            name,
            type=click.Choice(get_args(annotation)),
            default=field.default,
            show_default=True,
            help=help_text,
        )
    return click.option(flag, name, type=annotation, default=field.default, show_default=True, help=help_text)


def params_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per ``AnimateParams`` field (besides the sources), in the model's order."""
    fields = [(n, f) for n, f in AnimateParams.model_fields.items() if n not in _SOURCES]
    for name, field in reversed(fields):
        command = _option_for(name, field)(command)
    return command


class ProgressBar:
    """A tqdm bar on stderr, shown from the first progress report (so an input error prints alone),
    whose total may be revised as the engine learns the frame count."""

    def __init__(self, description: str, unit: str = "frame") -> None:
        self._description = description
        self._unit = unit
        self._bar: Any = None

    def __call__(self, done: float, total: float) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit=self._unit,
                desc=self._description,
                file=sys.stderr,
                mininterval=0.25,
                dynamic_ncols=True,
                leave=False,
            )
        if total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_output(output: Path) -> None:
    if output.suffix.lower() != ".mp4":
        fail(f"--output {output}: must be an .mp4 file")
    if not output.parent.is_dir():
        fail(f"--output {output}: the folder {output.parent} does not exist")
    if output.is_dir():
        fail(f"--output {output}: is a folder, not a file")


def _render_locally(params: AnimateParams, output: Path) -> dict[str, object]:
    from stillmotion.inputs import FetchPolicy
    from stillmotion.render import render_request

    # On the user's own machine, local files and local addresses are the user's to read.
    policy = FetchPolicy(allow_local_paths=True, allow_hosts=frozenset({"0.0.0.0/0", "::/0"}))
    bar = ProgressBar("animating")
    try:
        with tempfile.TemporaryDirectory(prefix="stillmotion-") as work:
            report = render_request(params, output, workdir=Path(work), policy=policy, on_progress=bar)
    finally:
        bar.close()
    return report.as_dict()


@click.command()
@click.option("--image", required=True, help="The photo to animate: a local path or an http(s) URL.")
@click.option("--video", required=True, help="The driving video: a local path or an http(s) URL.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=True, path_type=Path),
    help="Where to write the MP4.",
)
@params_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object with what was rendered on stdout, instead of the path.",
)
@click.option(
    "--server",
    metavar="URL",
    default=None,
    help="Render on a stillmotion server (e.g. http://127.0.0.1:8000) instead of locally.",
)
@click.option(
    "--api-key",
    envvar="STILLMOTION_API_KEY",
    default=None,
    help="The server's API key (or set STILLMOTION_API_KEY).",
)
def animate(output: Path, as_json: bool, server: str | None, api_key: str | None, **fields: Any) -> None:
    """Animate IMAGE with the head motion, expressions and sound of VIDEO into an MP4."""
    try:
        params = AnimateParams(**fields)
    except ValidationError as error:
        fail(describe_validation_error(error))
    _check_output(output)
    try:
        if server is not None:
            from stillmotion.cli.remote import animate_remote

            report = animate_remote(params, server=server, api_key=api_key, output=output, as_json=as_json)
        else:
            report = _render_locally(params, output)
    except InputError as error:
        fail(str(error))
    except StillmotionError as error:
        fail(str(error), EXIT_INTERNAL)
    except KeyboardInterrupt:
        fail("interrupted; no output was written", 130)
    click.echo(json.dumps(report) if as_json else report["output"])
