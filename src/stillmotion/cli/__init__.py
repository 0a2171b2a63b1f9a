"""The ``stillmotion`` command line.

Each subcommand lives in its own module and is imported only when it runs, so ``stillmotion animate``
does not pay for the web stack and ``stillmotion serve`` does not pay for MediaPipe.
"""

from __future__ import annotations

import importlib

import click

from stillmotion import __version__

#: command name -> "module:attribute" of its click command
_COMMANDS: dict[str, str] = {
    "animate": "stillmotion.cli.animate:animate",
    "bench": "stillmotion.cli.bench:bench",
    "demo": "stillmotion.cli.demo:demo",
    "serve": "stillmotion.cli.serve:serve",
    "keys": "stillmotion.cli.keys:keys",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stillmotion")
def cli() -> None:
    """Animate a still photo with the motion and the sound of a driving video."""


def main() -> None:
    cli()
