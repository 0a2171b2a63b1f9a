"""Motion from driving landmarks to targets: lag-free smoothing, soft limits, head and lid travel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stillmotion.engine import face_model as fm
from stillmotion.engine import media
from stillmotion.engine.framing import fit_photo, output_size
from stillmotion.engine.landmark_log import LandmarkLog
from stillmotion.engine.motion import OneEuroFilter, Retargeter, _soft_limit, smooth_zero_phase
from stillmotion.engine.pipeline import _smooth_driving
from stillmotion.engine.tracking import detect_photo_face
from stillmotion.samples import sample_image

RATE = 30.0


def _filter() -> OneEuroFilter:
    return OneEuroFilter(RATE, min_cutoff=1.5, beta=0.0)


def _lag(signal: np.ndarray, clean: np.ndarray) -> int:
    """The shift (frames) at which ``signal`` best matches ``clean``; positive when it comes late."""
    shifts = range(-10, 11)
    errors = [np.mean((np.roll(signal, -s) - clean)[15:-15] ** 2) for s in shifts]
    return list(shifts)[int(np.argmin(errors))]


def test_zero_phase_smoothing_keeps_the_timing_a_causal_filter_loses():
    t = np.arange(240) / RATE
    clean = np.sin(2 * math.pi * 0.3 * t)  # a nod every three seconds
    noisy = clean + np.random.default_rng(3).normal(scale=0.1, size=t.size)
    frames = [np.array([[value]]) for value in noisy]
    causal = _filter()
    late = np.array([causal(frame)[0, 0] for frame in frames])
    smoothed: list[np.ndarray] = []
    smooth_zero_phase(frames, smoothed, _filter)
    on_time = np.array([frame[0, 0] for frame in smoothed])

    assert _lag(late, clean) >= 2  # a tenth of a second late at 1.5 Hz
    assert _lag(on_time, clean) == 0
    error = np.sqrt(np.mean((on_time - clean)[15:-15] ** 2))
    assert error < 0.5 * np.sqrt(np.mean((late - clean)[15:-15] ** 2))
    assert error < 0.5 * 0.1  # and well under the noise it removed


def test_zero_phase_smoothing_wants_every_frame_and_an_empty_store():
    with pytest.raises(ValueError, match="bridge the gaps"):
        smooth_zero_phase([np.zeros((1, 1)), None], [], _filter)
    with pytest.raises(ValueError, match="empty"):
        smooth_zero_phase([np.zeros((1, 1))], [np.zeros((1, 1))], _filter)


def test_the_driving_gaze_is_smoothed_between_steady_eye_corners(portrait):
    """The gaze is the iris's place between its eye's corners: smoothing the irises but not the
    corners (which do not blink, unlike the lids) would leave the corners' tracking noise in it."""
    _, face = portrait
    rng = np.random.default_rng(11)
    noise = 0.02 * fm.interocular(face)  # about 0.05 of an eye's width
    with LandmarkLog() as log, LandmarkLog() as smoothed:
        for _ in range(120):
            frame = face.copy()
            frame[fm.EYE_CORNERS, :2] += rng.normal(scale=noise, size=(4, 2))
            log.append(frame)
        tracked = np.array([fm.gaze(frame) for frame in log])
        unit = _smooth_driving(log, smoothed, face, RATE)
        rendered = np.array([fm.gaze(frame * unit) for frame in smoothed])
    # An 8 Hz cut-off at 30 fps, run both ways, takes out about a third of white noise.
    assert (rendered.std(0) < 0.8 * tracked.std(0)).all()


def test_soft_limit_passes_small_motion_exactly_and_bounds_large_motion():
    limit = 10.0
    np.testing.assert_array_equal(_soft_limit(np.array([3.0, 4.0]), limit), [3.0, 4.0])  # |5| < 6
    sizes = np.linspace(0.0, 40.0, 401)
    limited = np.array([float(_soft_limit(np.array([s]), limit)[0]) for s in sizes])
    assert (np.diff(limited) > 0).all() and limited.max() < limit
    slope = np.diff(limited) / np.diff(sizes)
    knee = int(np.searchsorted(sizes, 6.0))  # the knee: 0.6 of the limit
    assert slope[knee - 2] == pytest.approx(1.0) and slope[knee + 1] == pytest.approx(1.0, abs=0.01)
    direction = _soft_limit(np.array([30.0, 40.0]), limit)
    assert np.cross(direction, [3.0, 4.0]) == pytest.approx(0.0, abs=1e-12)


@pytest.fixture(scope="module")
def landmarks() -> np.ndarray:
    original = media.read_image(sample_image())
    height, width = original.shape[:2]
    size = output_size(width, height, 720)
    return detect_photo_face(fit_photo(original, size, (0, 0, width, height)))


def test_a_talking_heads_travel_is_followed_exactly_and_a_drift_is_eased(landmarks):
    """The sample's head travels up to 0.8 inter-ocular distances while he talks: that much, in any
    direction, moves the photo's head by as much of its own face; twice the limit's worth of drift
    leaves it inside the limit."""
    face = fm.interocular(landmarks)
    retarget = Retargeter(landmarks, landmarks)
    rest = retarget.target(landmarks)[fm.RIGID, :2].mean(0)
    for travel, angle in ((0.8, 0.0), (0.8, 2.0), (2 * Retargeter.MAX_SHIFT, 1.0)):
        step = travel * face * np.array([math.cos(angle), math.sin(angle), 0.0])
        moved = retarget.target(landmarks + step)[fm.RIGID, :2].mean(0) - rest
        if travel < 1.0:
            np.testing.assert_allclose(moved, step[:2], atol=1e-6 * face)
        else:
            assert 0.84 * face < np.linalg.norm(moved) < Retargeter.MAX_SHIFT * face


def _shut(face: np.ndarray) -> np.ndarray:
    """``face`` with both upper lids lowered onto the lower lids (a blink)."""
    shut = face.copy()
    for upper, lower in fm.EYE_LIDS:
        shut[upper[1:-1]] = face[lower[1:-1]]
    return shut


def _open_wider(face: np.ndarray, factor: float) -> np.ndarray:
    """``face`` with both upper lids raised until the lid gaps are ``factor`` times as wide."""
    wide = face.copy()
    for upper, lower in fm.EYE_LIDS:
        wide[upper[1:-1]] = face[lower[1:-1]] + factor * (face[upper[1:-1]] - face[lower[1:-1]])
    return wide


def test_a_blink_shuts_a_photos_eyes_however_wide_they_are(landmarks):
    reference = landmarks
    for factor in (1.0, 2.0):  # the photo's eyes as open as the driving ones, then twice as open
        photo = _open_wider(landmarks, factor)
        target = Retargeter(photo, reference).target(_shut(reference))
        photo_gaps, target_gaps = np.array(fm.eye_gaps(photo)), np.array(fm.eye_gaps(target))
        assert (target_gaps < 0.05 * photo_gaps).all(), (factor, target_gaps / photo_gaps)


def _widened_mouth(face: np.ndarray, factor: float) -> np.ndarray:
    """``face`` with its lips scaled by ``factor`` about the mouth's centre (a wider smile, parted
    as much for its width)."""
    wide = face.copy()
    lips = np.unique(np.concatenate([fm.INNER_LIPS, fm.OUTER_LIPS]))
    centre = face[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT]].mean(0)
    wide[lips] = centre + factor * (face[lips] - centre)
    return wide


def _lips_closed(face: np.ndarray) -> np.ndarray:
    """``face`` with its lower inner lip raised onto the upper one."""
    closed = face.copy()
    closed[fm.LOWER_INNER_LIP] = face[fm.UPPER_INNER_LIP]
    return closed


def test_lips_that_meet_in_the_driving_face_meet_in_the_photo_even_a_wide_smiles(landmarks):
    reference = landmarks  # parted lips (the sample smiles: opening 0.17)
    for factor in (1.0, 1.4):  # a mouth as wide as the driving one's, then 1.4 times as wide
        photo = _widened_mouth(landmarks, factor)
        target = Retargeter(photo, reference).target(_lips_closed(reference))
        assert fm.mouth_opening(target) < 0.1 * fm.mouth_opening(photo), factor
        # ...and the driving mouth at rest leaves the photo's as it is.
        rest = Retargeter(photo, reference).target(reference)
        assert fm.mouth_opening(rest) == pytest.approx(fm.mouth_opening(photo), rel=0.02)


def _down_the_face(face: np.ndarray) -> np.ndarray:
    """The unit 2D direction from the forehead to the chin."""
    down = face[fm.CHIN, :2] - face[fm.FOREHEAD, :2]
    return down / np.linalg.norm(down)


def test_a_smiles_parted_lips_close_with_both_lips_meeting_between(landmarks):
    # The photo smiles with parted lips; the driving face at rest has its lips closed.
    photo, reference = landmarks, _lips_closed(landmarks)
    target = Retargeter(photo, reference).target(reference)
    down = _down_the_face(photo)
    gap = fm.lip_gap(photo)
    assert fm.lip_gap(target) < 0.35 * gap  # closed, down to what closed driving lips leave
    upper_down = (target[fm.UPPER_INNER_LIP_MID, :2] - photo[fm.UPPER_INNER_LIP_MID, :2]) @ down
    chin_up = (photo[fm.CHIN, :2] - target[fm.CHIN, :2]) @ down
    # The upper lip comes down off the teeth and the jaw comes up, each about half the way; the
    # jaw alone would shorten the lower face by the whole gap.
    assert 0.3 * gap < upper_down < 0.6 * gap
    assert 0.3 * gap < chin_up < 0.6 * gap
    # The corners, where the lips already meet, stay.
    for corner in (fm.MOUTH_LEFT, fm.MOUTH_RIGHT):
        assert np.linalg.norm(target[corner, :2] - photo[corner, :2]) < 0.1 * gap


def _jaw_dropped(face: np.ndarray, by: float) -> np.ndarray:
    """``face`` with everything below its upper inner lip (lower lip, chin) dropped by ``by`` mouth
    widths: a mouth open wide."""
    dropped = face.copy()
    upper = face[fm.UPPER_INNER_LIP]
    order = np.argsort(upper[:, 0])
    line = np.interp(face[:, 0], upper[order, 0], upper[order, 1])
    below = face[:, 1] > line + 0.5
    below[fm.UPPER_INNER_LIP] = False
    dropped[below, 1] += by * fm.mouth_width(face)
    return dropped


def test_a_mouth_open_wide_closes_mostly_by_its_jaw(landmarks):
    photo, reference = _jaw_dropped(landmarks, 0.4), _lips_closed(landmarks)
    target = Retargeter(photo, reference).target(reference)
    down = _down_the_face(photo)
    assert fm.lip_gap(target) < 0.35 * fm.lip_gap(photo)
    upper_down = (target[fm.UPPER_INNER_LIP_MID, :2] - photo[fm.UPPER_INNER_LIP_MID, :2]) @ down
    # Half of this closing would bring the upper lip down by a quarter of the mouth's width.
    assert upper_down < 0.11 * fm.mouth_width(photo)


def _lower_lip_thinned(face: np.ndarray, share: float, *, keep: int) -> np.ndarray:
    """``face`` with its lower lip thinned by ``share``: its rings moved toward ring ``keep`` (0 the
    inner contour, which then stays where it is, -1 the outer)."""
    thin = face.copy()
    rings = fm.LOWER_LIP_RINGS
    thin[rings] = face[rings] + share * (face[rings[keep]] - face[rings])
    return thin


def _lower_lip_thickness(face: np.ndarray) -> float:
    rings = fm.LOWER_LIP_RINGS
    return float(np.linalg.norm(face[rings[0], :2] - face[rings[-1], :2], axis=1).mean())


def test_a_lip_thins_by_the_driving_lips_share_not_its_pixels(landmarks):
    reference = landmarks
    # A photo whose lower lip is half as full, its mouth as open as the reference's.
    photo = _lower_lip_thinned(landmarks, 0.5, keep=0)
    target = Retargeter(photo, reference).target(_lower_lip_thinned(reference, 0.2, keep=-1))
    # The driving lip loses a fifth of its thickness; so does the photo's (the same pixels would
    # have taken two fifths of it).
    assert _lower_lip_thickness(target) == pytest.approx(0.8 * _lower_lip_thickness(photo), rel=0.05)
