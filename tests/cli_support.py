"""The type of the ``cli`` fixture, importable by test modules (a conftest is not importable by name:
each test folder has its own)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

CliRun = Callable[..., subprocess.CompletedProcess[str]]
