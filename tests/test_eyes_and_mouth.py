"""The openings drawn over the warp: lids that cover the eyeball, an inner mouth in the photo's light."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stillmotion.engine import face_model as fm
from stillmotion.engine import media, pipeline
from stillmotion.engine.eyes import EyeInterior
from stillmotion.engine.mouth import DrivingMouth, MouthInterior
from stillmotion.engine.mouth_log import MouthLog
from stillmotion.engine.options import RenderOptions
from stillmotion.engine.pipeline import FrameTrace, animate
from stillmotion.engine.segmentation import person_mask
from stillmotion.engine.warp import HeadRig


def _luma(image: np.ndarray, point: np.ndarray) -> float:
    x, y = np.round(point).astype(int)
    return float((image[y - 1 : y + 2, x - 1 : x + 2].astype(np.float64) @ [0.299, 0.587, 0.114]).mean())


def _lids_closed_to(landmarks: np.ndarray, openness: float) -> np.ndarray:
    """The photo's landmarks with each upper lid lowered toward the lower until the eye's openness
    (lid gap over eye width) is ``openness``."""
    target = landmarks.copy()
    for (upper, lower), now in zip(fm.EYE_LIDS, fm.eye_openness(landmarks), strict=True):
        lids = landmarks[upper[1:-1]], landmarks[lower[1:-1]]
        target[upper[1:-1]] = lids[1] + (openness / now) * (lids[0] - lids[1])
    return target


def test_the_eyes_are_untouched_at_rest(portrait):
    image, landmarks = portrait
    frame = image.copy()
    EyeInterior(image, landmarks).apply(frame, landmarks)
    assert np.abs(frame.astype(int) - image).max() <= 1


def test_a_closing_lid_covers_the_iris_instead_of_squeezing_it(portrait):
    image, landmarks = portrait
    # Lids down to openness 0.12 (the photo's is 0.33, FaceMesh's shut 0.08): drawn at about a
    # sixth of the photo's gap, past the iris centres.
    target = _lids_closed_to(landmarks, 0.12)
    frame = image.copy()
    EyeInterior(image, landmarks).apply(frame, target)
    for iris, (upper_mid, lower_mid) in (
        (fm.RIGHT_IRIS, fm.RIGHT_EYE_LIDS[0]),
        (fm.LEFT_IRIS, fm.LEFT_EYE_LIDS[0]),
    ):
        centre = landmarks[iris, :2]
        skin = _luma(image, landmarks[upper_mid, :2] - [0, 0.15 * fm.interocular(landmarks)])
        iris_dark = _luma(image, centre)
        # Where the iris was, the lid is now: as light as the lid's skin, not the dark iris.
        assert _luma(frame, centre) > iris_dark + 0.6 * (skin - iris_dark)
        # Below the new lid edge the eyeball is where it was, not squeezed toward the lower lid.
        below = landmarks[lower_mid, :2] + 0.3 * (target[upper_mid, :2] - landmarks[lower_mid, :2])
        assert abs(_luma(frame, below) - _luma(image, below)) < 12


def test_a_blink_facemesh_reads_as_shut_is_drawn_shut(portrait):
    """FaceMesh reads a shut eye with its lids still ~0.08 of the eye's width apart, so the driving
    motion says "shut" there: the eyes must be drawn as shut as with lids that meet, no slit left."""
    image, landmarks = portrait
    eyes = EyeInterior(image, landmarks)
    drawn = {}
    for openness in (0.08, 0.0):
        frame = image.copy()
        eyes.apply(frame, _lids_closed_to(landmarks, openness))
        drawn[openness] = frame.astype(np.float64)
    for upper, lower in fm.EYE_LIDS:
        x0, y0 = np.floor(landmarks[np.r_[upper, lower], :2].min(0)).astype(int)
        x1, y1 = np.ceil(landmarks[np.r_[upper, lower], :2].max(0)).astype(int)
        box = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        assert np.abs(drawn[0.08][box] - drawn[0.0][box]).mean() < 3.0
        # ...and that is a shut eye: the photo's iris is gone from it.
        assert np.abs(drawn[0.0][box] - image[box]).mean() > 10


@pytest.mark.parametrize(("glance", "gain"), [((0.12, 0.0), 1.0), ((0.0, 0.03), 1.8)], ids=["aside", "down"])
def test_the_iris_follows_the_gaze(portrait, glance, gain):
    image, landmarks = portrait
    eye = _eye_width(landmarks)
    shift = np.array(glance) * eye
    target = landmarks.copy()
    target[fm.IRISES, :2] += shift  # the lids stay
    frame = image.copy()
    EyeInterior(image, landmarks).apply(frame, target)
    for iris, corners in fm.GAZE_EYES:
        # The pupil, as dark as the photo's or darker (its catchlight left behind), is where the
        # iris is drawn (up and down ``gain`` times as far as the target, in the eye's own frame),
        # and its old place shows what was beside it.
        z, origin, unit = fm.eye_frame(np.vstack([landmarks[[*corners, iris], :2], target[[iris], :2]]))
        moved = complex(z[3] - z[2])
        at = origin + unit * (z[2] + moved.real + 1j * gain * moved.imag)
        drawn = np.array([at.real, at.imag])
        assert _luma(frame, drawn) < _luma(image, landmarks[iris, :2]) + 12
        beside = 2 * landmarks[iris, :2] - drawn
        assert abs(_luma(frame, landmarks[iris, :2]) - _luma(image, beside)) < 12


@pytest.fixture(scope="module")
def drawn_eyes(portrait) -> tuple[np.ndarray, np.ndarray]:
    """A drawing on the sample's landmarks, as exact as a test needs: flat skin, each eye's opening
    white, a blue iris disc with a black pupil whose top the upper lid hides, and a brown lash line
    along the upper lid."""
    _, landmarks = portrait
    skin = np.full((720, 720, 3), (224, 172, 140), np.float64)
    image = skin.copy()
    for (upper, lower), iris in zip(fm.EYE_LIDS, (fm.RIGHT_IRIS, fm.LEFT_IRIS), strict=True):
        opening = np.zeros((720, 720), np.uint8)
        outline = np.concatenate([landmarks[upper, :2], landmarks[lower[::-1], :2]])
        cv2.fillPoly(opening, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        eye = np.full((720, 720, 3), 255, np.uint8)
        centre, radius = _iris_and_radius(landmarks, iris)
        for share, colour in ((1.0, (40, 90, 230)), (0.45, (0, 0, 0))):
            at, size = tuple(np.round(centre * 16).astype(int)), round(share * radius * 16)
            cv2.circle(eye, at, size, colour, -1, cv2.LINE_AA, shift=4)
        inside = opening[..., None] / 255.0
        image = inside * eye + (1.0 - inside) * image
        lashes = np.round(landmarks[upper, :2] * 16).astype(np.int32)
        cv2.polylines(image, [lashes], False, (90, 60, 50), 2, cv2.LINE_AA, shift=4)
    return np.round(image).astype(np.uint8), landmarks


def _iris_pixels(image: np.ndarray) -> np.ndarray:
    """Where ``image`` shows the drawing's iris: blue or black."""
    rgb = image.astype(int)
    return (rgb[..., 2] > rgb[..., 0] + 60) | (rgb.sum(-1) < 120)


def _eye_width(landmarks: np.ndarray) -> float:
    """The right eye's width, corner to corner (pixels): the unit a glance is given in."""
    return float(
        np.linalg.norm(landmarks[fm.RIGHT_EYE_CORNERS[0], :2] - landmarks[fm.RIGHT_EYE_CORNERS[1], :2])
    )


def _iris_and_radius(landmarks: np.ndarray, iris: int) -> tuple[np.ndarray, float]:
    centre = landmarks[iris, :2]
    return centre, float(np.linalg.norm(landmarks[iris + 1 : iris + 5, :2] - centre, axis=1).mean())


def test_an_eye_opened_wider_than_the_photos_keeps_its_iris_round(drawn_eyes):
    """Lids opened to 0.6 of the eye's width (the drawing's: 0.35) show more white, and the iris as
    it was: stretching the eyeball to the lids drew the iris half again as tall as it is wide."""
    image, landmarks = drawn_eyes
    frame = image.copy()
    EyeInterior(image, landmarks).apply(frame, _lids_closed_to(landmarks, 0.6))
    for iris in (fm.RIGHT_IRIS, fm.LEFT_IRIS):
        (x, y), radius = _iris_and_radius(landmarks, iris)
        box = (
            slice(int(y - 3 * radius), int(y + 3 * radius)),
            slice(int(x - 3 * radius), int(x + 3 * radius)),
        )
        rows, cols = np.nonzero(_iris_pixels(frame[box]))
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert height <= np.ptp(np.nonzero(_iris_pixels(image[box]))[0]) + 1 < width


def _pupil_centre(image: np.ndarray, near: np.ndarray, radius: float) -> np.ndarray:
    """The drawing's pupil near ``near``: the centroid of its darkness (x, y), to a fraction of a pixel."""
    x0, y0 = np.round(near - 2 * radius).astype(int)
    x1, y1 = np.round(near + 2 * radius).astype(int)
    darkness = np.clip(50.0 - image[y0:y1, x0:x1].astype(float).sum(-1) / 3, 0.0, None)
    rows, cols = np.mgrid[y0:y1, x0:x1]
    return np.array([(darkness * cols).sum(), (darkness * rows).sum()]) / darkness.sum()


@pytest.mark.parametrize(("glance", "drawn"), [((0.04, 0.0), (1.0, 0.0)), ((0.0, 0.04), (0.0, 1.8))])
def test_a_vertical_glance_is_drawn_further_than_a_sideways_one(drawn_eyes, glance, drawn):
    """The iris's vertical move is drawn ``_VERTICAL_GAZE_GAIN`` (1.8) times as far as the target
    iris moves, its sideways move as far (the self-reenactment's gaze then reads the same share of
    the real frames' both ways)."""
    image, landmarks = drawn_eyes
    eye = _eye_width(landmarks)
    target = landmarks.copy()
    target[fm.IRISES, :2] += np.array(glance) * eye  # the drawing's eyes are level: image axes are theirs
    frame = image.copy()
    EyeInterior(image, landmarks).apply(frame, target)
    for iris in (fm.RIGHT_IRIS, fm.LEFT_IRIS):
        centre, radius = _iris_and_radius(landmarks, iris)
        moved = (_pupil_centre(frame, centre, radius) - _pupil_centre(image, centre, radius)) / eye
        np.testing.assert_allclose(moved, np.array(drawn) * 0.04, atol=0.006)


def test_where_the_iris_moves_away_the_white_behind_it_shows(drawn_eyes):
    image, landmarks = drawn_eyes
    eye = _eye_width(landmarks)
    target = landmarks.copy()
    target[fm.IRISES, 0] += 0.12 * eye  # a glance toward the image's right, the lids still
    frame = image.copy()
    EyeInterior(image, landmarks).apply(frame, target)
    for iris in (fm.RIGHT_IRIS, fm.LEFT_IRIS):
        centre, radius = _iris_and_radius(landmarks, iris)
        x, y = np.round(centre - [0.8 * radius, 0.0]).astype(int)  # the iris's trailing edge was here
        assert _iris_pixels(image)[y, x]
        assert frame[y, x].astype(int).min() > 200  # now white, not the iris dragged along


def _open_mouth(landmarks: np.ndarray) -> np.ndarray:
    """The photo's landmarks with everything below the mouth's corners (lower lip, chin) dropped by
    half the mouth's width."""
    target = landmarks.copy()
    width = np.linalg.norm(landmarks[fm.MOUTH_LEFT, :2] - landmarks[fm.MOUTH_RIGHT, :2])
    below = landmarks[:, 1] > landmarks[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT], 1].max()
    target[below, 1] += 0.5 * width
    return target


def test_the_inner_mouth_is_in_the_photos_light_whatever_the_driving_exposure(portrait):
    image, landmarks = portrait
    mouth = MouthInterior(image, landmarks, feather=1.5)
    target = _open_mouth(landmarks)
    # The driving video: the same face, once as it is and once a stop darker with a blue cast.
    frames = []
    for gain in (np.array([1.0, 1.0, 1.0]), np.array([0.45, 0.5, 0.6])):
        driving = np.clip(image * gain, 0, 255).astype(np.uint8)
        frame = image.copy()
        mouth.apply(frame, target, driving, landmarks)
        frames.append(frame.astype(np.float64))
    inside = np.abs(frames[0] - image).max(2) > 0
    assert inside.sum() > 200  # the mouth was drawn
    difference = np.abs(frames[0] - frames[1])[inside]
    assert difference.mean() < 4.0  # the cast and the exposure are undone


def test_the_inner_mouth_keeps_its_own_colours_when_the_lights_match(portrait):
    image, landmarks = portrait
    target = _open_mouth(landmarks)
    frame = image.copy()
    MouthInterior(image, landmarks, feather=1.5).apply(frame, target, image, landmarks)
    drawn = np.abs(frame.astype(int) - image).max(2) > 0
    source = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(source, [np.round(landmarks[fm.INNER_LIPS, :2]).astype(np.int32)], 1)
    # Driven by its own picture, the photo's mouth is shown as it is: no re-lighting, no re-tinting.
    np.testing.assert_allclose(frame[drawn].mean(0), image[source > 0].mean(0), atol=12)


def test_a_smile_driven_to_closed_lips_shows_lips_not_a_line_of_teeth(portrait):
    image, landmarks = portrait
    rig = HeadRig(landmarks, image.shape[1::-1], person_mask(image))
    # Lips parted by 0.02 of the mouth's width: what closed driving lips become once retargeted.
    target = landmarks.copy()
    upper, lower = landmarks[fm.UPPER_INNER_LIP[1:-1]], landmarks[fm.LOWER_INNER_LIP[1:-1]]
    target[fm.LOWER_INNER_LIP[1:-1]] = upper + 0.02 / fm.mouth_opening(landmarks) * (lower - upper)
    warped = rig.mesh(4).warp(image, rig.vertices(target))
    frame = warped.copy()
    MouthInterior(image, landmarks, feather=1.5).apply(frame, target, image, landmarks)
    width = np.linalg.norm(landmarks[fm.MOUTH_LEFT, :2] - landmarks[fm.MOUTH_RIGHT, :2])
    teeth = _luma(image, landmarks[fm.UPPER_INNER_LIP_MID, :2] + [0, 0.1 * width])
    lip = _luma(image, landmarks[fm.LOWER_INNER_LIP_MID, :2] + [0, 0.1 * width])
    assert teeth > lip + 30  # the photo shows white teeth between its lips
    line = (target[fm.UPPER_INNER_LIP[2:-2], :2] + target[fm.LOWER_INNER_LIP[2:-2], :2]) / 2
    # The warp alone squeezes the teeth into a white line between the lips; drawn, the lips meet.
    assert max(_luma(warped, point) for point in line) > lip + 0.5 * (teeth - lip)
    assert max(_luma(frame, point) for point in line) < lip + 0.3 * (teeth - lip)


def test_the_mouths_shadows_take_the_lips_hue_not_the_driving_cameras_cast(portrait):
    image, landmarks = portrait
    target = _open_mouth(landmarks)
    # A driving mouth whose inside is a blue-grey shadow (a cast only the dark parts have, as a car
    # window's light leaves it), in a face lit like the photo's.
    driving = image.copy()
    inner = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(landmarks[fm.INNER_LIPS, :2]).astype(np.int32)], 1)
    driving[inner > 0] = (24, 26, 40)
    frame = image.copy()
    MouthInterior(image, landmarks, feather=1.5).apply(frame, target, driving, landmarks)
    opening = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(opening, [np.round(target[fm.INNER_LIPS, :2]).astype(np.int32)], 1)
    drawn = frame[opening > 0].astype(np.float64)
    shadow = drawn[drawn @ [0.299, 0.587, 0.114] < 40]
    assert len(shadow) > 50  # the cavity was drawn
    red, green, blue = shadow.mean(0)
    assert red > green + 4 and red > blue + 4  # warm, as the photo's lips are, not navy
    assert (shadow @ [0.299, 0.587, 0.114]).mean() < 35  # and as dark as it was (luma 27)


def test_the_opened_mouth_is_drawn_up_to_its_inner_lips(portrait):
    """What the mouth draws covers the opening up to the target inner lips: a pixel and a half
    inside them it is all but fully drawn (a wide inward feather left the warp's stretched lips
    showing there, the lips thicker and the mouth less open, and FaceMesh read the inner lips short)."""
    image, landmarks = portrait
    target = _open_mouth(landmarks)
    paint = MouthInterior(image, landmarks, feather=1.5).prepare(
        target, DrivingMouth.of(image, landmarks), landmarks
    )
    assert paint is not None
    for edge, inward in ((fm.UPPER_INNER_LIP_MID, 1.5), (fm.LOWER_INNER_LIP_MID, -1.5)):
        x, y = np.round(target[edge, :2] + [0, inward]).astype(int)
        assert paint.alpha[y - paint.rows.start, x - paint.cols.start] > 0.9


def test_a_wide_open_mouth_is_dark_into_its_corners_and_not_past_them(photo, driving, tmp_path):
    # The sample smiles: its lips meet at each corner in a dark wedge (the inside of the mouth),
    # which the warp would draw out along the opened lips into whiskers on the skin.
    targets: list[np.ndarray] = []

    def watch(trace: FrameTrace) -> None:
        targets.append(trace.target)

    report = animate(photo, driving, tmp_path / "out.mp4", RenderOptions(audio=False), observer=watch)
    frames = list(media.iter_frames(report.output))
    widest = np.argsort([fm.mouth_opening(target) for target in targets])[-6:]
    assert fm.mouth_opening(targets[widest[0]]) > 0.5
    whiskers, tips = 0, []
    for index in widest:
        frame, target = frames[index], targets[index]
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        opening = np.zeros(luma.shape, np.uint8)
        cv2.fillPoly(opening, [np.round(target[fm.INNER_LIPS, :2]).astype(np.int32)], 1)
        opening = cv2.dilate(opening, np.ones((3, 3), np.uint8))
        skin = _luma(frame, target[50, :2])  # the cheek
        rows, cols = np.indices(luma.shape)
        centre = target[[fm.UPPER_INNER_LIP_MID, fm.LOWER_INNER_LIP_MID], :2].mean(0)
        for outer, inner in fm.LIP_CORNERS:
            x, y = target[outer, :2]
            near = (cols - x) ** 2 + (rows - y) ** 2 < (0.15 * fm.interocular(target)) ** 2
            whiskers += int((near & (opening == 0) & (luma < 0.55 * skin)).sum())
            corner = target[inner, :2]
            tips.append(_luma(frame, corner + 2 * (centre - corner) / np.linalg.norm(centre - corner)) / skin)
    # Drawn out, the wedges leave about 65 dark pixels on the skin beside these corners.
    assert whiskers < 30
    # Two pixels in from each corner the mouth is open, dark (0.48 of the cheek's luma if the
    # opening is blended in short of its corners).
    assert np.mean(tips) < 0.35


@pytest.mark.parametrize("zoom", [1.0, 4.0], ids=["as-is", "scaled-down"])
def test_the_driving_mouth_window_holds_the_lips_at_the_pixels_it_says(portrait, zoom):
    image, landmarks = portrait
    frame = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
    points = landmarks.copy()
    points[:, :2] = (landmarks[:, :2] + 0.5) * zoom - 0.5
    mouth = DrivingMouth.of(frame, points)
    assert max(mouth.pixels.shape[:2]) <= 96  # a 4x mouth is kept small, not at its own size
    window = mouth.to_window(points[fm.OUTER_LIPS, :2])
    height, width = mouth.pixels.shape[:2]
    assert (window >= 0).all() and (window[:, 0] < width).all() and (window[:, 1] < height).all()
    # The mouth's centre in the window is the frame's there, lips and all.
    centre = points[fm.INNER_LIPS, :2].mean(0)
    x, y = np.round(mouth.to_window(centre[None])[0]).astype(int)
    fx, fy = np.round(centre).astype(int)
    assert np.abs(mouth.pixels[y, x].astype(int) - frame[fy, fx]).max() < 20


def test_the_mouth_log_gives_back_each_frames_mouth_and_the_lost_ones(portrait, tmp_path):
    image, landmarks = portrait
    shifted = landmarks + np.array([40.0, -25.0, 0.0])
    mouths = [DrivingMouth.of(image, landmarks), None, DrivingMouth.of(image, shifted)]
    with MouthLog(tmp_path) as log, MouthLog(tmp_path) as later:
        log.append(mouths[0])
        later.append(mouths[1])
        later.append(mouths[2])
        log.extend(later)
        assert log.count == 3 and log[1] is None
        for index in (0, 2):
            back, kept = log[index], mouths[index]
            assert back is not None and kept is not None
            np.testing.assert_array_equal(back.pixels, kept.pixels)
            np.testing.assert_allclose(back.origin, kept.origin)
            np.testing.assert_allclose(back.skin, kept.skin, atol=1e-3)
        later.clear()
        assert later.count == 0
        with pytest.raises(IndexError):
            later[0]


def test_the_driving_video_is_decoded_once(photo, driving, tmp_path, monkeypatch):
    decoded = []
    real = media.iter_timed_frames

    def counted(*args, **kwargs):
        for item in real(*args, **kwargs):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(media, "iter_timed_frames", counted)
    report = animate(photo, driving, tmp_path / "out.mp4", RenderOptions(turbo=True))
    # Pass 1 only, its two halves together: each frame once (the first half reads one frame past
    # the split to find it, the second half's tracker warms up on the few before it); pass 2
    # renders from what pass 1 kept.
    assert report.frames <= len(decoded) <= report.frames + 1 + pipeline._TRACKER_WARM_UP_FRAMES
