"""The engine's pieces on their own: geometry, motion, warp, framing, landmark log."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stillmotion.engine import face_model as fm
from stillmotion.engine.framing import crop_window, output_size
from stillmotion.engine.landmark_log import LandmarkLog
from stillmotion.engine.motion import (
    FaceFeatures,
    LostFaceBridge,
    OneEuroFilter,
    choose_reference,
    resample_positions,
)
from stillmotion.engine.warp import MeshWarp

RNG = np.random.default_rng(7)


def _rotation(yaw: float, roll: float) -> np.ndarray:
    cy, sy, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll)
    return np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])


def test_similarity_fit_recovers_a_known_transform_and_inverts_it():
    points = RNG.normal(size=(40, 3)) * 50
    rotation = _rotation(0.3, -0.2)
    moved = 1.3 * points @ rotation.T + [5, -7, 2]
    fit = fm.fit_similarity(points, moved)
    assert fit.scale == pytest.approx(1.3)
    np.testing.assert_allclose(fit.rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(fit.inverse().apply(moved), points, atol=1e-9)


def test_one_euro_filter_is_steady_when_still_and_follows_a_step():
    filt = OneEuroFilter(rate=30, min_cutoff=1.5, beta=8.0)
    noisy = [filt(np.array([0.0]) + RNG.normal(scale=0.01, size=1)) for _ in range(60)]
    assert np.std(noisy[30:]) < 0.005
    after_step = [filt(np.array([1.0])) for _ in range(10)]
    assert after_step[-1][0] > 0.9


def _features(mouth: float, eyes: float = 0.3, yaw: float = 0.0) -> FaceFeatures:
    return FaceFeatures(mouth=mouth, eyes=eyes, yaw=yaw, pitch=0.0, roll=0.0)


def test_the_reference_is_the_most_neutral_frame_not_the_first():
    talking = [_features(0.4 + 0.1 * math.sin(i)) for i in range(20)]
    neutral = [_features(0.02) for _ in range(5)]
    turned = [_features(0.02, yaw=0.5) for _ in range(5)]
    blinking = [_features(0.02, eyes=0.05) for _ in range(5)]
    clip = [None, *talking, *turned, *blinking, *neutral, *talking]
    assert 1 + 20 + 5 + 5 <= choose_reference(clip) < 1 + 20 + 5 + 5 + 5


def test_a_lost_face_holds_then_eases_back_to_rest():
    rest, moved = np.zeros((2, 2)), np.ones((2, 2))
    bridge = LostFaceBridge(rest, hold=3, ease=4)
    bridge(moved)
    held = [bridge(None) for _ in range(3)]
    easing = [bridge(None)[0, 0] for _ in range(4)]
    assert all(np.array_equal(h, moved) for h in held)
    assert easing == sorted(easing, reverse=True) and easing[-1] == 0.0


@pytest.mark.parametrize(("fps_out", "count"), [(None, 120), (24.0, 96), (48.0, 192)])
def test_resampling_spans_the_same_duration(fps_out, count):
    n, positions = resample_positions(120, 30000 / 1001, fps_out)
    assert n == count and positions[0] == 0 and positions[-1] <= 119
    if fps_out == 48.0:
        assert len(np.unique(positions)) == n  # interpolated, no repeats


@pytest.mark.parametrize(
    ("size", "short", "expected"),
    [
        ((512, 512), 720, (720, 720)),
        ((640, 480), 1080, (1440, 1080)),
        ((480, 640), 720, (720, 960)),
        ((3000, 1000), 720, (1280, 720)),
        ((1000, 3000), 1080, (1080, 1920)),
        ((641, 479), 720, (964, 720)),
    ],
)
def test_output_size_keeps_aspect_up_to_16_9_with_even_sides(size, short, expected):
    assert output_size(*size, short) == expected


def test_a_wide_photo_is_cropped_around_the_face():
    assert crop_window(3000, 1000, (2900.0, 500.0)) == (3000 - 1777, 0, 1777, 1000)


def test_mesh_warp_is_identity_at_rest_and_exact_at_vertices():
    size = (320, 240)
    inner = RNG.uniform([60, 60], [260, 180], size=(30, 2))
    anchors = np.array([[-100, -100], [420, -100], [-100, 340], [420, 340]], float)
    source = np.concatenate([inner, anchors])
    warp = MeshWarp(source, size, step=4)
    grid = np.stack(np.meshgrid(np.arange(320), np.arange(240)), -1)
    np.testing.assert_allclose(warp.backward_map(source), grid, atol=1e-3)
    target = source.copy()
    target[:30] += [6.0, -4.0]  # a gentle shift of the inner points
    backward = warp.backward_map(target)
    for (x, y), (sx, sy) in zip(target[:30], source[:30], strict=True):
        sample = backward[round(y), round(x)]
        assert np.abs(sample - [sx + round(x) - x, sy + round(y) - y]).max() < 0.6
    assert warp.flipped(target) == 0


def test_landmark_log_round_trips_and_marks_lost_faces(tmp_path):
    frames = [RNG.normal(size=(fm.N_LANDMARKS, 3)), None, RNG.normal(size=(fm.N_LANDMARKS, 3))]
    with LandmarkLog(tmp_path) as log:
        for f in frames:
            log.append(f)
        log[1] = frames[0]
        got = list(log)
    np.testing.assert_allclose(got[0], frames[0], atol=1e-5)
    np.testing.assert_allclose(got[1], frames[0], atol=1e-5)
    assert log.count == 3
