"""The quality benchmark: its metric functions on synthetic data whose answers are known, and one
real run of ``stillmotion.bench.quality.run`` on the bundled sample."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from stillmotion.bench import metrics, quality
from stillmotion.engine import face_model as fm
from stillmotion.engine import media
from stillmotion.engine.framing import fit_photo, output_size
from stillmotion.engine.tracking import detect_photo_face
from stillmotion.engine.warp import MeshWarp
from stillmotion.samples import sample_image, sample_video

from media_factory import still_video

RNG_SEED = 3


def _textured(size: int = 64) -> np.ndarray:
    """A smooth random greyscale image with structure at several scales, 0–255."""
    rng = np.random.default_rng(RNG_SEED)
    noise = rng.uniform(0, 255, (size, size))
    return cv2.GaussianBlur(noise, (0, 0), 2.0) * 0.5 + cv2.GaussianBlur(noise, (0, 0), 0.7) * 0.5


def _face(interocular: float = 100.0) -> np.ndarray:
    """Landmarks ``(478, 3)`` scattered over a face-sized box, with the outer eye corners (the
    inter-ocular points) exactly ``interocular`` apart."""
    rng = np.random.default_rng(RNG_SEED)
    landmarks = rng.uniform(0, 2 * interocular, (fm.N_LANDMARKS, 3))
    right, left = fm.RIGHT_EYE_CORNERS[0], fm.LEFT_EYE_CORNERS[0]
    landmarks[right, :2] = (50.0, 80.0)
    landmarks[left, :2] = (50.0 + interocular, 80.0)
    return landmarks


# --------------------------------------------------------------------------------------------------
# Pictures


def test_luma_uses_bt601_weights() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 255, 255)
    rgb[0, 1] = (255, 0, 0)
    assert metrics.luma(rgb)[0, 0] == pytest.approx(255.0)
    assert metrics.luma(rgb)[0, 1] == pytest.approx(0.299 * 255)
    assert metrics.luma(rgb)[1, 1] == 0.0


def test_psnr_of_a_known_error() -> None:
    image = np.full((16, 16, 3), 100, np.uint8)
    off_by_five = image + np.uint8(5)
    assert metrics.psnr(image, off_by_five) == pytest.approx(10 * math.log10(255**2 / 25))
    assert metrics.psnr(image, image) == math.inf


def test_ssim_is_one_for_identical_images() -> None:
    image = _textured()
    assert metrics.ssim(image, image) == pytest.approx(1.0)


def test_ssim_drops_as_noise_grows() -> None:
    image = _textured()
    rng = np.random.default_rng(RNG_SEED)
    noise = rng.standard_normal(image.shape)
    scores = [metrics.ssim(image, np.clip(image + sigma * noise, 0, 255)) for sigma in (2, 10, 40)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ssim_matches_the_reference_implementation() -> None:
    # scikit-image with Wang et al.'s settings: Gaussian window σ=1.5, population statistics.
    image = _textured()
    distorted = np.clip(image + 15 * np.random.default_rng(RNG_SEED).standard_normal(image.shape), 0, 255)
    reference = structural_similarity(
        image, distorted, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert metrics.ssim(image, distorted) == pytest.approx(reference, abs=1e-6)


def test_ssim_refuses_images_smaller_than_its_window() -> None:
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_face_box_pads_and_clips() -> None:
    landmarks = np.array([[10.0, 20.0, 0.0], [50.0, 60.0, 0.0]])
    rows, cols = metrics.face_box(landmarks, (100, 100, 3))
    assert (rows.start, rows.stop) == (16, 65)  # 20 - 4 .. 60 + 4, inclusive
    assert (cols.start, cols.stop) == (6, 55)
    rows, cols = metrics.face_box(landmarks, (58, 52, 3))
    assert (rows.stop, cols.stop) == (58, 52)


def test_side_by_side_scales_the_driving_frame_to_the_output_height() -> None:
    driving = np.zeros((144, 176, 3), np.uint8)
    output = np.zeros((720, 720, 3), np.uint8)
    assert metrics.side_by_side(driving, output).shape == (720, 880 + 720, 3)


# --------------------------------------------------------------------------------------------------
# Landmarks and series


def test_landmark_error_is_a_shift_in_interocular_units() -> None:
    face = _face(interocular=100.0)
    moved = face + np.array([3.0, 4.0, 0.0])  # 5 px in every point
    assert metrics.landmark_error(moved, face) == pytest.approx(0.05)
    assert metrics.landmark_error(face, face) == 0.0


def test_a_detector_offset_turns_and_scales_with_the_face() -> None:
    face = _face()
    offset = np.tile([2.0, 0.0], (len(face), 1))  # the detector reads every point 2 px to the right
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # a quarter turn, then twice the size
    moved = face.copy()
    moved[:, :2] = 2.0 * face[:, :2] @ turn.T + [40.0, -7.0]
    carried = metrics.carry_offset(offset, face, moved)
    np.testing.assert_allclose(carried, np.tile([0.0, 4.0], (len(face), 1)), atol=1e-9)


def test_the_detectors_zero_is_read_through_the_outputs_encoder(tmp_path: Path) -> None:
    original = media.read_image(sample_image())
    height, width = original.shape[:2]
    photo = fit_photo(original, output_size(width, height, quality.RESOLUTION), (0, 0, width, height))
    landmarks = detect_photo_face(photo)
    raw = quality._detector_offset(photo, landmarks)
    still = tmp_path / "still.mp4"
    encoded = quality._detector_offset(photo, landmarks, (still, Fraction(30)))
    assert media.probe_video(still).frame_count == quality._CALIBRATION_FRAMES
    size = fm.interocular(landmarks)
    # The same unmoved face, read a little differently once encoded: a zero, not a motion.
    assert np.linalg.norm(raw, axis=1).mean() < 0.03 * size
    assert 0 < np.linalg.norm(encoded - raw, axis=1).mean() < 0.01 * size


def test_face_measures_are_the_engine_measures() -> None:
    face = _face()
    measures = metrics.face_measures(face)
    assert tuple(measures) == metrics.SERIES
    assert measures["mouth"] == fm.mouth_opening(face)
    assert measures["roll"] == pytest.approx(math.degrees(fm.head_angles(face)[2]))
    series = metrics.measure_series([face, None])
    assert np.isnan(series["mouth"][1]) and series["mouth"][0] == measures["mouth"]


def test_gaze_is_not_measured_while_an_eye_closes(portrait) -> None:
    _, face = portrait
    blink = face.copy()
    upper, lower = fm.EYE_LIDS[0]  # the right eye's lids: its upper lid lowered most of the way
    blink[upper[1:-1]] = face[lower[1:-1]] + 0.3 * (face[upper[1:-1]] - face[lower[1:-1]])
    blink[fm.RIGHT_IRIS, 1] += 5.0  # FaceMesh's guess at an iris under the lid
    series = metrics.measure_series([face, face, blink, face, None])
    for name in ("gaze_h", "gaze_v"):
        assert np.isfinite(series[name][[0, 1, 3]]).all() and np.isnan(series[name][[2, 4]]).all()
    assert np.isfinite(series["eye_right"][2])  # the blink itself is measured


def _rolled(face: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``face`` turned in the image plane by ``degrees`` about its centre (put at (360, 360)), and
    the 2x2 rotation that turned it."""
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rolled = face.copy()
    rolled[:, :2] = (face[:, :2] - face[:, :2].mean(0)) @ rotation.T + 360.0
    return rolled, rotation


@pytest.mark.parametrize("roll_degrees", [0.0, 25.0])
def test_gaze_reads_both_irises_glancing_the_same_way_as_that_way(portrait, roll_degrees: float) -> None:
    """Both irises moved down the face (or toward the image's right) by 0.1 of the eyes' width read
    as a gaze of +0.1 down (or right), whatever the head's roll: neither eye's reading cancels the
    other's."""
    face, rotation = _rolled(portrait[1], roll_degrees)
    eye_width = float(np.linalg.norm(face[fm.RIGHT_EYE_CORNERS[0], :2] - face[fm.RIGHT_EYE_CORNERS[1], :2]))
    right, down = rotation @ [1.0, 0.0], rotation @ [0.0, 1.0]  # the face's own axes in the image
    at_rest = np.array(fm.gaze(face))
    for direction, expected in ((down, (0.0, 0.1)), (right, (0.1, 0.0))):
        glance = face.copy()
        glance[fm.IRISES, :2] += 0.1 * eye_width * direction
        assert np.array(fm.gaze(glance)) - at_rest == pytest.approx(expected, abs=0.01)


def test_pearson_of_known_series() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.pearson(x, 3 * x + 2) == pytest.approx(1.0)
    assert metrics.pearson(x, -x) == pytest.approx(-1.0)
    # Deviations (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5): 4 / sqrt(5 * 5).
    assert metrics.pearson(x, np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    assert metrics.pearson(x, np.full(4, 7.0)) is None


def test_noise_level_recovers_white_noise() -> None:
    rng = np.random.default_rng(RNG_SEED)
    t = np.arange(20_000)
    series = np.sin(t / 300) + 0.05 * rng.standard_normal(len(t))
    assert metrics.noise_level(series) == pytest.approx(0.05, rel=0.05)


def test_correlation_follows_a_moving_series_and_declines_a_flat_one() -> None:
    rng = np.random.default_rng(RNG_SEED)
    t = np.arange(120)
    driving = np.sin(t / 10) + 0.01 * rng.standard_normal(len(t))
    output = 0.5 * driving + 0.2
    output[5] = np.nan  # a frame where the output's face was lost
    report = metrics.correlation(driving, output)
    assert report["r"] == pytest.approx(1.0)
    assert report["frames"] == 119
    assert report["snr_driving"] > metrics.MIN_SNR

    flat = metrics.correlation(0.01 * rng.standard_normal(len(t)), output)
    assert flat["r"] is None
    assert "flat" in str(flat["reason"])


def test_jitter_is_zero_for_steady_motion_and_the_acceleration_squared_otherwise() -> None:
    face = _face(interocular=100.0)
    t = np.arange(10.0)
    steady = [face + np.array([2.0 * k, 1.0 * k, 0.0]) for k in t]
    accelerating = [face + np.array([0.5 * 4.0 * k**2, 0.0, 0.0]) for k in t]  # 4 px per frame²
    assert metrics.jitter(steady) == pytest.approx(0.0, abs=1e-12)
    assert metrics.jitter(accelerating) == pytest.approx((4.0 / 100.0) ** 2)


def test_jitter_is_higher_for_a_noisy_trajectory_and_skips_lost_frames() -> None:
    rng = np.random.default_rng(RNG_SEED)
    face = _face()
    smooth = [face + np.array([20 * math.sin(k / 15), 0.0, 0.0]) for k in range(60)]
    noisy = [lm + rng.normal(0, 1.0, lm.shape) for lm in smooth]
    assert metrics.jitter(noisy) > 10 * metrics.jitter(smooth)
    gappy: list[np.ndarray | None] = [face, face, None, face, face]
    assert metrics.jitter(gappy) is None  # no three consecutive frames with a face
    assert metrics.jitter([None, None]) is None


# --------------------------------------------------------------------------------------------------
# Background and warp validity


def test_background_mask_leaves_a_margin_around_the_person() -> None:
    person = np.zeros((200, 200), np.float32)
    cv2.circle(person, (100, 100), 40, 1.0, -1)
    background = metrics.background_mask(person, grow=1 / 20)  # 10 px
    assert not background[100, 100 + 45]  # inside the margin
    assert background[100, 100 + 55]
    assert background[0, 0]


def test_background_change_of_a_static_and_a_shifted_image() -> None:
    ramp = np.tile(np.arange(100, dtype=np.float64) * 2, (100, 1))  # 2 grey levels per column
    everywhere = np.ones(ramp.shape, bool)
    assert metrics.background_change(ramp, ramp, everywhere) == 0.0
    shift = np.float32([[1, 0, 3], [0, 1, 0]])  # 3 px right: every interior pixel changes by 6
    shifted = cv2.warpAffine(ramp, shift, (100, 100), borderMode=cv2.BORDER_REPLICATE)
    interior = np.zeros(ramp.shape, bool)
    interior[:, 10:90] = True
    assert metrics.background_change(shifted, ramp, interior) == pytest.approx(6.0)
    assert metrics.background_change(shifted, ramp, np.zeros(ramp.shape, bool)) == 0.0


def test_flipped_triangles_and_their_area() -> None:
    source = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    triangles = np.array([[0, 1, 2], [1, 3, 2]])
    mirrored = source.copy()
    mirrored[2] = (0.0, -2.0)  # the first triangle folds over its base
    flipped = metrics.flipped_triangles(source, mirrored, triangles)
    # The neighbour sharing the moved vertex is squashed but keeps its winding: (3·2 − 5·−2) = 16 → 4.
    assert flipped.tolist() == [True, False]
    assert metrics.folded_area(mirrored, triangles[:1], flipped[:1]) == pytest.approx(2.0)
    moved = metrics.flipped_triangles(source, source + 10, triangles)
    assert not moved.any()


def test_flipped_triangles_agrees_with_the_mesh_warp_count() -> None:
    rng = np.random.default_rng(RNG_SEED)
    inside = rng.uniform(4, 28, (30, 2))
    anchors = np.array([[-20.0, -20.0], [52.0, -20.0], [-20.0, 52.0], [52.0, 52.0]])
    mesh = MeshWarp(np.concatenate([inside, anchors]), (32, 32), step=4)
    target = mesh.source + np.concatenate([rng.normal(0, 4, inside.shape), np.zeros((4, 2))])
    flipped = metrics.flipped_triangles(mesh.source, target, mesh.triangles)
    assert flipped.any()
    assert int(flipped.sum()) == mesh.flipped(target)


# --------------------------------------------------------------------------------------------------
# The whole benchmark


def _check_finite(node: object, where: str) -> None:
    """Every number in the results is finite; every null metric sits beside a reason."""
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                assert "reason" in node, f"{where}.{key} is null without a reason"
            _check_finite(value, f"{where}.{key}")
    elif isinstance(node, list):
        for k, value in enumerate(node):
            _check_finite(value, f"{where}[{k}]")
    elif isinstance(node, float):
        assert math.isfinite(node), f"{where} = {node}"


@pytest.mark.timeout(600)
def test_run_measures_every_metric_and_writes_the_images(tmp_path: Path) -> None:
    results = quality.run(tmp_path)

    json.dumps(results, allow_nan=False)  # the CLI writes it as JSON
    _check_finite(results, "results")
    assert set(results["pass"]) == set(quality.TARGETS)
    assert all(isinstance(ok, bool) for ok in results["pass"].values())
    for name, target in quality.TARGETS.items():
        node: object = results
        for key in target.path[:-1]:
            node = node[key]
        value = node[target.path[-1]]
        assert value is not None or "reason" in node, f"{name}: no value and no reason"
        if value is None:
            assert name in results["not_assessed"]

    cross = results["cross_reenactment"]
    assert set(cross["correlation"]) == set(metrics.SERIES)
    for name in ("widest_mouth", "eyes_closed", "largest_rotation"):
        image = cv2.imread(str(tmp_path / f"{name}.png"))
        assert image is not None and image.shape[0] == 720
    assert results["self_reenactment"]["frames_measured"] > 100


def test_the_instrument_floor_is_zero_for_the_unmoved_photo_and_grows_with_motion(tmp_path: Path) -> None:
    original = media.read_image(sample_image())
    height, width = original.shape[:2]
    photo = fit_photo(original, output_size(width, height, quality.RESOLUTION), (0, 0, width, height))
    landmarks = detect_photo_face(photo)
    encoded_as = (tmp_path / "still.mp4", Fraction(30))
    offset = quality._detector_offset(photo, landmarks, encoded_as)
    still = quality._instrument_floor(
        photo, landmarks, [landmarks] * 8, offset, (tmp_path / "a.mp4", Fraction(30))
    )
    # Turned and shifted a little more each frame, as a talking head is.
    centre = landmarks[fm.RIGID, :2].mean(0)
    moving = []
    for k in range(8):
        angle = math.radians(2.0 * k)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        moved = landmarks.copy()
        moved[:, :2] = (landmarks[:, :2] - centre) @ turn.T + centre + [3.0 * k, -1.5 * k]
        moving.append(moved)
    floor = quality._instrument_floor(photo, landmarks, moving, offset, (tmp_path / "b.mp4", Fraction(30)))
    # Unmoved, only the first frame scores (a detection, where the calibration reads the tracker's
    # frames after it; the output's first frame is read the same way): about 0.013 once in 8 frames.
    assert still["worst_frame"] == 0 and still["mean"] < 0.005
    assert 1.5 * still["mean"] < floor["mean"] < 0.03


@pytest.mark.parametrize("roll_degrees", [0.0, 25.0])
def test_a_gaze_moved_in_the_eyes_frames_reads_as_that_gaze(portrait, roll_degrees: float) -> None:
    face, _ = _rolled(portrait[1], roll_degrees)
    moved = fm.with_gaze_moved(face, 0.05 - 0.08j)
    assert np.array(fm.gaze(moved)) - fm.gaze(face) == pytest.approx((0.05, -0.08), abs=1e-9)
    others = np.setdiff1d(np.arange(fm.N_LANDMARKS), fm.IRISES)
    assert np.array_equal(moved[others], face[others])


def test_the_gaze_readback_reads_the_irises_the_repaint_moves(portrait, tmp_path: Path) -> None:
    """The sample's irises, drawn 0.08 eye widths to either side and up and down, read back as a
    glance the way they were drawn (a repaint that left them would read about 0), less than all of
    it, and most of all sideways, where no lid hides the iris's edge (measured: 0.58 sideways,
    0.19 up and down, the eye's outline following the iris by 0.72)."""
    photo, landmarks = portrait
    readback = quality._gaze_readback(photo, landmarks, (tmp_path / "gaze.mp4", Fraction(30)))
    assert 0.3 < readback["horizontal"] < 1.0
    assert 0.05 < readback["vertical"] < readback["horizontal"]
    assert 0.0 < readback["eye_contour_follows_iris"] < 1.5


@pytest.mark.timeout(600)
def test_the_benchmark_runs_on_a_clip_of_ones_own(tmp_path: Path) -> None:
    clip = tmp_path / "two_seconds.mp4"
    info = media.probe_video(sample_video())
    with media.VideoWriter(clip, info.width, info.height, info.fps, crf=12) as writer:
        for _, frame in zip(range(60), media.iter_frames(sample_video()), strict=False):
            writer.write(frame)
    results = quality.run(None, clip)
    assert results["driving"] == "two_seconds.mp4"
    assert results["cross_reenactment"]["frames"] == 60
    assert results["self_reenactment"]["frames_measured"] > 50
    _check_finite(results, "results")


def test_the_benchmark_refuses_a_clip_with_no_face_and_driving_without_quality(cli, tmp_path: Path) -> None:
    grey = still_video(np.full((120, 160, 3), 128, np.uint8), tmp_path / "grey.mp4", seconds=1.0)
    run = cli("bench", "--quality", "--driving", grey)
    assert run.returncode == 2
    assert "grey.mp4: no face in any frame" in run.stderr
    run = cli("bench", "--driving", grey)
    assert run.returncode == 2 and "--driving: only with --quality" in run.stderr
