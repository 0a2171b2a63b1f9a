"""The safety checker on real inference with NudeNet's bundled detector (no mocks).

No explicit image can ship with the project, so the blocking path is exercised on the sample
portrait with a class that legitimately fires on it (FACE_FEMALE) passed as the blocking class.
"""

from __future__ import annotations

import importlib.metadata
import struct
import zlib
from pathlib import Path

import pytest

from stillmotion import safety, samples
from stillmotion.errors import LimitError, MediaError, SafetyBlocked

PHOTO = samples.sample_image()


def test_a_safe_photo_passes() -> None:
    safety.check_photo(PHOTO)
    scores = safety.detect(PHOTO)
    assert max(scores.get(label, 0.0) for label in safety.BLOCKING_CLASSES) < 0.1


def test_the_blocking_path_on_real_inference() -> None:
    # The astronaut's face is detected as FACE_FEMALE (≈0.72): made a blocking class, it blocks.
    with pytest.raises(
        SafetyBlocked,
        match=r"^the safety checker blocked the photo: female face detected "
        r"\(score 0\.\d\d ≥ 0\.50\); set disable_safety_checker to skip the check$",
    ):
        safety.check_photo(PHOTO, threshold=0.5, classes={"FACE_FEMALE"})
    # ... and only at or above the threshold.
    safety.check_photo(PHOTO, threshold=0.95, classes={"FACE_FEMALE"})


def test_scores_are_nudenets_own() -> None:
    from nudenet import NudeDetector  # the wrapper we bypass, as the reference

    ours = safety.detect(PHOTO)
    theirs = NudeDetector().detect(str(PHOTO))
    assert theirs, "NudeNet should see the astronaut's face"
    for detection in theirs:
        assert ours[detection["class"]] == pytest.approx(detection["score"], abs=1e-4)


def test_the_detector_is_loaded_once_from_the_installed_package() -> None:
    safety.detect(PHOTO)
    assert safety._session() is safety._session()
    assert safety._session.cache_info().currsize == 1
    model = safety.model_path()
    assert model.parent.name == "nudenet" and model.stat().st_size > 10_000_000


def test_an_undecodable_photo_is_a_media_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(MediaError, match=r"^broken\.png: not an image we can read"):
        safety.check_photo(broken)


def test_a_photo_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # A PNG whose header claims 20000x20000 pixels (400 MP) and holds none: the checker must refuse
    # it from the header, as the engine does, not hand it to a decoder.
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    checksum = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    chunk = struct.pack(">I", len(header)) + b"IHDR" + header + checksum
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    with pytest.raises(LimitError, match=r"^huge\.png: 20000x20000 is 400\.0 MP"):
        safety.check_photo(huge)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        safety.check_photo(PHOTO, threshold=0.0)
    with pytest.raises(ValueError, match="unknown safety classes"):
        safety.check_photo(PHOTO, classes={"FACE"})


def test_class_names_read_as_words() -> None:
    assert safety.describe("FEMALE_BREAST_EXPOSED") == "exposed female breast"
    assert safety.describe("FACE_MALE") == "male face"
    assert safety.BLOCKING_CLASSES.issubset(safety.LABELS)


def test_exactly_one_opencv_is_installed() -> None:
    # nudenet declares opencv-python-headless; the install must keep mediapipe's OpenCV the only one.
    names = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    assert sorted(name for name in names if name.startswith("opencv")) == ["opencv-contrib-python"]
