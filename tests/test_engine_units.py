"""The engine's pieces on their own: geometry, motion, warp, the face mesh, framing, landmark log."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from stillmotion.engine import face_model as fm
from stillmotion.engine import media
from stillmotion.engine.compositing import background_plate
from stillmotion.engine.framing import crop_window, fit_photo, output_size
from stillmotion.engine.landmark_log import LandmarkLog
from stillmotion.engine.motion import (
    FaceFeatures,
    LostFaceBridge,
    OneEuroFilter,
    choose_reference,
    resample_positions,
)
from stillmotion.engine.tracking import detect_photo_face
from stillmotion.engine.warp import HeadRig, MeshWarp, Untangler, _around_face
from stillmotion.samples import sample_image

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


# --------------------------------------------------------------------------------------------------
# The face mesh


def _twice_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = points[triangles[:, 0], :2], points[triangles[:, 1], :2], points[triangles[:, 2], :2]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _polygon_area(points: np.ndarray) -> float:
    """Signed (positive clockwise on screen, y down): the shoelace formula."""
    x, y = points[:, 0], points[:, 1]
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2)


def _down(points: np.ndarray) -> np.ndarray:
    across = points[fm.LEFT_EYE_CORNERS[0], :2] - points[fm.RIGHT_EYE_CORNERS[0], :2]
    return np.array([-across[1], across[0]]) / np.linalg.norm(across)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The sample photo's landmarks at 720p, a person mask drawn around the face, and the size."""
    original = media.read_image(sample_image())
    height, width = original.shape[:2]
    size = output_size(width, height, 720)
    landmarks = detect_photo_face(fit_photo(original, size, (0, 0, width, height)))
    oval = landmarks[fm.FACE_OVAL, :2]
    centre, half = oval.mean(0), (oval.max(0) - oval.min(0)) / 2
    person = np.zeros(size[::-1], np.float32)
    cv2.ellipse(
        person,
        (round(centre[0]), round(centre[1])),
        (round(1.6 * half[0]), round(1.5 * half[1])),
        0,
        0,
        360,
        1.0,
        -1,
    )
    chin = landmarks[fm.CHIN, :2]
    cv2.rectangle(
        person,
        (round(chin[0] - 3 * half[0]), round(chin[1])),
        (round(chin[0] + 3 * half[0]), size[1]),
        1.0,
        -1,
    )
    return landmarks, person, size


def test_faces_are_the_cliques_of_the_edges_that_are_not_separating_triangles():
    # Triangle 0-1-2 split in three around point 3, with a triangle on each of its sides: its
    # outline is a 3-clique whose every edge already borders two faces.
    inner = [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)]
    edges = [*inner, (0, 4), (4, 1), (1, 5), (5, 2), (2, 6), (6, 0)]
    triangles = fm.triangles_from_edges(edges, outline=(0, 4, 1, 5, 2, 6))
    expected = [[0, 1, 3], [0, 1, 4], [0, 2, 3], [0, 2, 6], [1, 2, 3], [1, 2, 5]]
    assert sorted(sorted(t) for t in triangles.tolist()) == expected
    points = np.array([[0, 0], [10, 0], [5, 8], [5, 3], [5, -4], [11, 6], [-1, 6]], float)
    assert (_twice_areas(points, triangles) > 0).all()  # the outline runs clockwise on screen


def test_the_canonical_mesh_is_the_tesselation_with_the_eyes_and_mouth_open():
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    triangles = fm.canonical_triangles()
    assert triangles.shape == (fm.CANONICAL_TRIANGLES, 3)
    sides = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1)
    edges, uses = np.unique(sides, axis=0, return_counts=True)
    assert {tuple(e) for e in edges.tolist()} == {(min(a, b), max(a, b)) for a, b in FACEMESH_TESSELATION}
    assert uses.max() == 2  # a surface: no edge borders three triangles

    def loop(ring: np.ndarray) -> set[tuple[int, int]]:
        return {(min(a, b), max(a, b)) for a, b in zip(ring, np.roll(ring, -1), strict=True)}

    holes = (fm.RIGHT_EYE, fm.LEFT_EYE, fm.INNER_LIPS)
    boundary = {tuple(e) for e in edges[uses == 1].tolist()}
    assert boundary == loop(fm.FACE_OVAL).union(*(loop(hole) for hole in holes))
    # Closing each hole of n points takes n - 2 triangles: the 898 of the canonical face model.
    assert len(triangles) + sum(len(hole) - 2 for hole in holes) == 898


def test_the_canonical_mesh_tiles_the_photos_face(face):
    landmarks, _, _ = face
    areas = _twice_areas(landmarks, fm.canonical_triangles()) / 2
    oval = _polygon_area(landmarks[fm.FACE_OVAL, :2])
    holes = sum(abs(_polygon_area(landmarks[h, :2])) for h in (fm.RIGHT_EYE, fm.LEFT_EYE, fm.INNER_LIPS))
    # Wound consistently, the triangles sum to the face less its openings, exactly; the few a
    # turned cheek shows from behind (negative) overlap their neighbours by under 1% of the face.
    assert areas.sum() == pytest.approx(oval - holes, rel=1e-9)
    assert np.abs(areas).sum() < 1.01 * (oval - holes)


def test_the_rigs_triangles_tile_the_whole_mesh_without_overlap(face):
    landmarks, person, size = face
    rig = HeadRig(landmarks, size, person)
    areas = _twice_areas(rig.source, rig.triangles) / 2
    assert (areas > 0).all()  # every triangle faces the camera in the photo
    hull = cv2.contourArea(cv2.convexHull(rig.source.astype(np.float32)))
    oval = _polygon_area(landmarks[fm.FACE_OVAL, :2])
    # The face's triangles and the Delaunay ones around it fill the hull of all vertices; what
    # overlaps is the photo's own fold at the cheeks, a fraction of a percent of the face.
    assert hull * (1 - 1e-6) <= areas.sum() < hull + 0.01 * oval


def test_an_oval_segment_a_point_crowds_is_split_until_the_tilings_meet():
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)  # clockwise on screen, as FACE_OVAL
    oval = 50 + 20 * np.stack([np.cos(angles), np.sin(angles)], 1)
    middle = (oval[0] + oval[1]) / 2
    crowding = middle + 0.3 * (middle - 50) / np.linalg.norm(middle - 50)  # inside its diametral circle
    ring = 50 + 45 * np.stack([np.cos(angles), np.sin(angles)], 1)
    vertices = np.concatenate([oval, [crowding], ring])
    splits, triangles = _around_face(vertices, np.arange(12), np.arange(12, len(vertices)), len(vertices))
    assert (splits.start.tolist(), splits.end.tolist(), splits.share.tolist()) == ([0], [1], [0.5])
    every = np.concatenate([vertices, splits.place(vertices)])
    areas = _twice_areas(every, triangles) / 2
    hull = cv2.contourArea(cv2.convexHull(every.astype(np.float32)))
    assert (areas > 0).all()
    assert areas.sum() == pytest.approx(hull - _polygon_area(oval), rel=1e-6)  # the ring, exactly


def test_every_grid_node_gets_a_triangle(face):
    landmarks, person, size = face
    rig = HeadRig(landmarks, size, person)
    mesh = rig.mesh(4)
    shift = np.array([3.0, -2.0])
    shifted = mesh.forward_displacement(rig.source + shift)
    np.testing.assert_allclose(shifted, np.broadcast_to(shift, shifted.shape), atol=1e-4)
    # A mesh that misses part of the image: the nodes there take the nearest triangle, clamped.
    partial = MeshWarp(np.array([[10.0, 10.0], [50.0, 12.0], [30.0, 40.0], [60.0, 45.0]]), (80, 60), step=4)
    shifted = partial.forward_displacement(partial.source + shift)
    np.testing.assert_allclose(shifted, np.broadcast_to(shift, shifted.shape), atol=1e-4)


def test_the_rig_is_exactly_still_at_rest(face):
    landmarks, person, size = face
    rig = HeadRig(landmarks, size, person)
    np.testing.assert_array_equal(rig.vertices(landmarks), rig.source)
    np.testing.assert_array_equal(rig.source[: fm.N_LANDMARKS], landmarks[:, :2])
    mesh = rig.mesh(4)
    assert mesh.moving_map(rig.source) is None
    assert mesh.flipped(rig.source) == 0
    grid = np.stack(np.meshgrid(np.arange(size[0]), np.arange(size[1])), -1)
    np.testing.assert_allclose(mesh.backward_map(rig.source), grid, atol=1e-4)


def _expression(landmarks: np.ndarray) -> np.ndarray:
    """The photo's face with the jaw dropped half a mouth width but the chin left behind (so the
    lower lip overshoots the lip–chin crease, as retargeting a wide mouth onto a small one does), the
    eyes shut past closed (each upper lid a pixel below its lower lid) and the irises turned aside."""
    target = landmarks.copy()
    corners = landmarks[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT], :2]
    mouth, middle = float(np.linalg.norm(corners[0] - corners[1])), corners.mean(0)
    lip = landmarks[fm.LOWER_INNER_LIP_MID, 1]
    drop = 0.5 * mouth * np.clip((landmarks[:, 1] - middle[1]) / (lip - middle[1]), 0, 1)
    drop *= np.clip(1.5 - np.abs(landmarks[:, 0] - middle[0]) / (0.5 * mouth), 0, 1)
    chin = landmarks[:, 1] > landmarks[fm.LIP_CHIN_CREASE, 1].min() - 1
    chin[fm.LOWER_LIP_RINGS.ravel()] = False
    target[:, 1] += np.where(chin, 0.3, 1.0) * drop
    for upper, lower in fm.EYE_LIDS:
        target[upper[1:-1], :2] = landmarks[lower[1:-1], :2] + [0.0, 1.0]
    eye = np.linalg.norm(landmarks[fm.RIGHT_EYE_CORNERS[0], :2] - landmarks[fm.RIGHT_EYE_CORNERS[1], :2])
    target[fm.IRISES, 0] += 0.15 * eye
    return target


def test_an_open_mouth_shut_eyes_and_turned_irises_fold_nothing(face):
    landmarks, person, size = face
    rig = HeadRig(landmarks, size, person)
    target = _expression(landmarks)
    mesh = MeshWarp(rig.source, size, 4, rig.triangles)
    assert mesh.flipped(np.concatenate([target[:, :2], rig.source[fm.N_LANDMARKS :]])) > 0  # as asked
    assert mesh.flipped(rig.vertices(target)) == 0  # as drawn


def test_untangling_keeps_the_lower_lip_above_the_chin_crease_and_the_lids_in_order(face):
    landmarks, _, _ = face
    rest = landmarks[:, :2]
    untangle = Untangler(rest)
    np.testing.assert_array_equal(untangle(rest), rest)
    asked = _expression(landmarks)[:, :2]
    out = untangle(asked)
    down = _down(out)
    lip, crease = fm.LOWER_LIP_RINGS[3, 2:-2], fm.LIP_CHIN_CREASE
    rest_gap = (rest[crease] - rest[lip]) @ _down(rest)
    assert ((out[crease] - out[lip]) @ down >= 0.3 * rest_gap - 1e-9).all()
    # The lip pushed past the crease keeps its place (the mouth opens as wide as asked); the crease
    # gives way below it.
    assert ((asked[crease] - asked[lip]) @ down < 0.3 * rest_gap).any()  # as asked, crossed
    np.testing.assert_allclose(out[lip], asked[lip], atol=1e-9)
    assert ((out[crease] - asked[crease]) @ down >= -1e-9).all()
    rings = fm.LOWER_LIP_RINGS  # each ring keeps its share of its gap to the next (where it has one)
    for inner, outer in itertools.pairwise(rings):
        rest_gap = (rest[outer] - rest[inner]) @ _down(rest)
        assert ((out[outer] - out[inner]) @ down >= np.minimum(0.3 * rest_gap, rest_gap) - 1e-9).all()
    for upper, lower in fm.EYE_LIDS:
        assert ((out[lower[1:-1]] - out[upper[1:-1]]) @ down > 0).all()


def test_the_ring_under_the_jaw_moves_with_the_jaw(face):
    landmarks, person, size = face
    rig = HeadRig(landmarks, size, person)
    target = landmarks.copy()
    # A head tilting back: the jaw rises toward the mouth, the rest of the face stays.
    rise = 0.15 * fm.interocular(landmarks)
    jaw = landmarks[:, 1] > landmarks[fm.MOUTH_LEFT, 1]
    target[jaw, 1] -= rise
    ring = slice(fm.N_LANDMARKS, fm.N_LANDMARKS + HeadRig.RAYS)
    under = rig.source[ring][:, 1] > landmarks[fm.CHIN, 1]
    moved = rig.vertices(target)[ring] - rig.source[ring]
    # Followed as the jaw moves (less the neck's share), so the band between them is not stretched.
    assert (moved[under, 1] < -0.9 * HeadRig.NECK_FOLLOW * rise).all()


def test_the_head_ring_moves_with_the_outline_of_a_turning_head(face):
    landmarks, person, size = face
    rig = HeadRig(landmarks, size, person)
    centre = landmarks[fm.RIGID].mean(0)
    target = (landmarks - centre) @ _rotation(math.radians(15), 0.0).T + centre
    ring = slice(fm.N_LANDMARKS, fm.N_LANDMARKS + HeadRig.RAYS)
    beside = np.abs(rig.source[ring][:, 1] - landmarks[fm.RIGHT_EYE_CORNERS[0], 1]) < 0.5 * fm.interocular(
        landmarks
    )
    moved = (rig.vertices(target)[ring] - rig.source[ring])[beside, 0]
    left = rig.source[ring][beside, 0] < centre[0]
    # In depth one cheek's outline swings out, the other's in: no one motion of the head fits both.
    outline = target[fm.FACE_OVAL, 0] - landmarks[fm.FACE_OVAL, 0]
    assert abs(outline.max() - outline.min()) > 0.1 * fm.interocular(landmarks)
    # The hair beside each cheek moves as that cheek's outline does, so the band between them keeps
    # its width on both sides instead of being stretched on one and squeezed on the other.
    nearest = np.argmin(
        np.linalg.norm(rig.source[ring][beside, None] - landmarks[None, fm.FACE_OVAL, :2], axis=2), axis=1
    )
    np.testing.assert_allclose(moved, outline[nearest], atol=1e-9)
    assert moved[left].mean() != pytest.approx(moved[~left].mean(), abs=0.05 * fm.interocular(landmarks))


def test_the_plate_inpaints_an_edge_the_person_mask_cut_short_and_keeps_the_background():
    # A 720-px photo: a person (disc) whose collar's dark rim the segmentation left outside its mask,
    # 8 px out (under 3 of the 256-px model's pixels), and a dark line of background 30 px out.
    photo = np.full((720, 720, 3), 200, np.uint8)
    centre, radius = (360, 360), 200
    cv2.circle(photo, centre, radius, (90, 60, 40), -1)
    cv2.circle(photo, centre, radius + 8, (40, 30, 50), 1)
    cv2.circle(photo, centre, radius + 30, (40, 30, 50), 1)
    person = np.zeros((720, 720), np.float32)
    cv2.circle(person, centre, radius, 1.0, -1)
    plate = background_plate(photo, person)
    rows, cols = np.indices(person.shape)
    distance = np.hypot(cols - centre[0], rows - centre[1]) - radius
    dark = plate.astype(int).sum(2) < 300
    # The rim would stay in the plate as a still ghost beside the moving body.
    assert not (dark & (np.abs(distance - 8) < 1.5)).any()
    assert (dark & (np.abs(distance - 30) < 1.5)).sum() > 1000  # the real background is kept
