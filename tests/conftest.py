"""Shared fixtures: the bundled sample media and a runner for the real ``stillmotion`` CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test helpers (media_factory) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from stillmotion.samples import sample_image, sample_video

from cli_support import CliRun, run_cli


@pytest.fixture(scope="session")
def photo() -> Path:
    return sample_image()


@pytest.fixture(scope="session")
def driving() -> Path:
    return sample_video()


@pytest.fixture(scope="session")
def cli() -> CliRun:
    """Run ``stillmotion ARGS...`` in a fresh interpreter, as a user would, and capture its output."""
    return run_cli
