"""Shared fixtures: the bundled sample media (and the photo as the engine sees it) and a runner for
the real ``stillmotion`` CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# Test helpers (media_factory) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from stillmotion.engine import media
from stillmotion.engine.framing import fit_photo, output_size
from stillmotion.engine.tracking import detect_photo_face
from stillmotion.samples import sample_image, sample_video

from cli_support import CliRun, run_cli


@pytest.fixture(scope="session")
def photo() -> Path:
    return sample_image()


@pytest.fixture(scope="session")
def driving() -> Path:
    return sample_video()


@pytest.fixture(scope="session")
def portrait() -> tuple[np.ndarray, np.ndarray]:
    """The sample photo fitted to 720p, as the engine renders it, and its landmarks."""
    original = media.read_image(sample_image())
    height, width = original.shape[:2]
    image = fit_photo(original, output_size(width, height, 720), (0, 0, width, height))
    return image, detect_photo_face(image)


@pytest.fixture(scope="session")
def cli() -> CliRun:
    """Run ``stillmotion ARGS...`` in a fresh interpreter, as a user would, and capture its output."""
    return run_cli
