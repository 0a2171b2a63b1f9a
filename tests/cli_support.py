"""Running the real ``stillmotion`` command, for every test that needs it (a conftest is not
importable by name: each test folder has its own)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

CliRun = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``stillmotion ARGS...`` in a fresh interpreter, as a user would, and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "stillmotion", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
