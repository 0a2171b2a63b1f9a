"""How the command line reports a failure: one line on stderr and a documented exit status."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

#: The user's input was wrong (bad file, no face, beyond a limit, bad option).
EXIT_INPUT = 2
#: Something failed that is not the user's to fix.
EXIT_INTERNAL = 1


def fail(message: str, status: int = EXIT_INPUT) -> NoReturn:
    """Print ``stillmotion: error: <message>`` on stderr and exit with ``status``."""
    click.echo(f"stillmotion: error: {message}", err=True)
    sys.exit(status)
