"""Facts about the MediaPipe FaceMesh topology (478 points with ``refine_landmarks``) and the
measures the engine takes on it: head angles, mouth opening, eye openness, gaze, rigid alignment.

Landmark indices follow MediaPipe's canonical face mesh (Kartynnik et al., "Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs", 2019) and its iris extension (Ablavatski et al., 2020).
Landmark arrays are ``(478, 3)`` float arrays in pixels: x right, y down, z away from the camera in the
same units as x.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from stillmotion.engine.mediapipe_loader import mediapipe

N_LANDMARKS = 478

#: Points that move with the skull and hardly with expression: forehead, nose bridge and tip,
#: eye corners, temples, cheekbones. Head pose is fitted on these alone.
RIGID = np.array(
    [
        10,
        151,
        9,
        8,
        168,
        6,
        197,
        195,
        5,
        4,
        1,
        33,
        263,
        133,
        362,
        127,
        356,
        234,
        454,
        116,
        345,
        109,
        338,
        67,
        297,
    ]
)

#: Face outline, clockwise from the top of the forehead.
FACE_OVAL = np.array(
    [
        10,
        338,
        297,
        332,
        284,
        251,
        389,
        356,
        454,
        323,
        361,
        288,
        397,
        365,
        379,
        378,
        400,
        377,
        152,
        148,
        176,
        149,
        150,
        136,
        172,
        58,
        132,
        93,
        234,
        127,
        162,
        21,
        54,
        103,
        67,
        109,
    ]
)

#: Inner lip contour, going round: the upper inner lip left to right, then the lower inner lip back.
INNER_LIPS = np.array(
    [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
)
#: Outer lip contour, going round.
OUTER_LIPS = np.array(
    [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
)
UPPER_INNER_LIP_MID, LOWER_INNER_LIP_MID = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 78, 308
#: Each mouth corner's (outer, inner) lip landmarks.
LIP_CORNERS = ((61, MOUTH_LEFT), (291, MOUTH_RIGHT))

#: Eyelid pairs (upper, lower) across each eye and its corners (outer, inner); "right"/"left" are the
#: subject's.
RIGHT_EYE_LIDS = ((159, 145), (158, 153), (160, 144))
LEFT_EYE_LIDS = ((386, 374), (385, 380), (387, 373))
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
#: All four eye corners.
EYE_CORNERS = np.array([*RIGHT_EYE_CORNERS, *LEFT_EYE_CORNERS])
RIGHT_IRIS, LEFT_IRIS = 468, 473  # iris centres; the 4 points after each are on the iris rim
#: Points of one iris from its centre: the centre and its rim.
IRIS_POINTS = 5

FOREHEAD, CHIN, RIGHT_TEMPLE, LEFT_TEMPLE = 10, 152, 234, 454
#: The base of the nose (subnasale), above the upper lip's middle.
NOSE_BASE = 2

#: Eye contours (lids and corners), going round each eye.
RIGHT_EYE = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246])
LEFT_EYE = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466])
IRISES = np.arange(468, 478)
#: Both eyes' lid contours (corners included).
LIDS = np.concatenate([RIGHT_EYE, LEFT_EYE])
#: Points whose fast motion carries meaning (blinks, gaze shifts, lip closures last a few frames):
#: smoothing must not lag on them as it may on the skull.
EXPRESSIVE = np.unique(np.concatenate([RIGHT_EYE, LEFT_EYE, IRISES, INNER_LIPS, OUTER_LIPS]))


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation`` (rows are points: ``scale * x @ rotation.T + t``)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def inverse(self) -> Similarity:
        # y = s x R^T + t  =>  x = (y - t) R / s
        return Similarity(1.0 / self.scale, self.rotation.T, -(self.translation @ self.rotation) / self.scale)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity from ``src`` to ``dst`` (both ``(n, d)``), reflections excluded.

    Umeyama, "Least-squares estimation of transformation parameters between two point patterns",
    IEEE TPAMI 13(4), 1991.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(len(sigma))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = (u * sign) @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float((sigma * sign).sum() / var_s) if var_s > 0 else 1.0
    return Similarity(scale, rotation, mu_d - scale * mu_s @ rotation.T)


def interocular(lm: np.ndarray) -> float:
    """Distance between the two iris centres (or outer eye corners), in pixels: the face's scale."""
    return float(np.linalg.norm(lm[RIGHT_EYE_CORNERS[0], :2] - lm[LEFT_EYE_CORNERS[0], :2]))


def head_angles(lm: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in radians, from the face's own axes: temple to temple, forehead to chin.

    Zero when the face looks into the camera upright. Signs: yaw > 0 turns toward image right,
    pitch > 0 tilts the chin toward the camera, roll > 0 is clockwise in the image.
    """
    right = lm[LEFT_TEMPLE] - lm[RIGHT_TEMPLE]
    down = lm[CHIN] - lm[FOREHEAD]
    yaw = float(np.arctan2(right[2], np.hypot(right[0], right[1])))
    pitch = float(np.arctan2(-down[2], np.hypot(down[0], down[1])))
    roll = float(np.arctan2(right[1], right[0]))
    return yaw, pitch, roll


def lip_gap(lm: np.ndarray) -> float:
    """The inner lips' gap at the middle of the mouth, in the landmarks' units."""
    return float(np.linalg.norm(lm[UPPER_INNER_LIP_MID, :2] - lm[LOWER_INNER_LIP_MID, :2]))


def mouth_width(lm: np.ndarray) -> float:
    """The distance between the inner lips' corners, in the landmarks' units."""
    return float(np.linalg.norm(lm[MOUTH_LEFT, :2] - lm[MOUTH_RIGHT, :2]))


def mouth_opening(lm: np.ndarray) -> float:
    """Inner-lip gap over mouth width: 0 closed, about 0.5 to 0.8 wide open."""
    return lip_gap(lm) / max(mouth_width(lm), 1e-6)


def eye_gaps(lm: np.ndarray) -> tuple[float, float]:
    """(right, left) gap between the lids, in the landmarks' units (the mean of three lid pairs)."""
    return tuple(  # type: ignore[return-value]
        float(np.mean([np.linalg.norm(lm[a, :2] - lm[b, :2]) for a, b in lids]))
        for lids in (RIGHT_EYE_LIDS, LEFT_EYE_LIDS)
    )


def eye_openness(lm: np.ndarray) -> tuple[float, float]:
    """(right, left) lid gap over eye width: about 0.25 to 0.35 open, under 0.1 closed."""
    gaps = eye_gaps(lm)
    widths = [np.linalg.norm(lm[a, :2] - lm[b, :2]) for a, b in (RIGHT_EYE_CORNERS, LEFT_EYE_CORNERS)]
    return (float(gaps[0] / max(widths[0], 1e-6)), float(gaps[1] / max(widths[1], 1e-6)))


def drawn_gap(gap: float, rest_gap: float, shut: float) -> float:
    """The gap to draw between lids or lips for a target ``gap``, the photo's own being ``rest_gap``
    and FaceMesh's reading of the opening when shut being ``shut`` (same units, e.g. over the eye's
    or mouth's width): the photo's gap drawn as it is, ``shut`` and less drawn shut, linear between;
    a gap wider than the photo's drawn as it is.

    FaceMesh reads shut lids a little apart, so a driving face's "shut" arrives as a small gap; drawn
    literally, it would leave a slit of eyeball or teeth that reads as open again.
    """
    if gap >= rest_gap:
        return gap
    floor = min(shut, 0.5 * rest_gap)
    return rest_gap * max(gap - floor, 0.0) / (rest_gap - floor)


def eye_frame(points: np.ndarray) -> tuple[np.ndarray, complex, complex]:
    """2D ``points`` (an eye's two corners first) as complex numbers in that eye's own frame, and
    the frame's origin and unit (image = origin + eye * unit): the corners go to 0 and 1, and
    down the face is +imag. Lids, iris and gaze are measured there, free of the head's roll and size.
    """
    z = points[:, 0] + 1j * points[:, 1]
    left, right = complex(z[0]), complex(z[1])
    return (z - left) / (right - left), left, right - left


#: Each eye's iris centre and its corners, the image-left corner first: the frame gaze is read in.
GAZE_EYES = ((RIGHT_IRIS, RIGHT_EYE_CORNERS), (LEFT_IRIS, LEFT_EYE_CORNERS[::-1]))


def gaze(lm: np.ndarray) -> tuple[float, float]:
    """Iris position within the eyes, averaged over both: (horizontal, vertical), each about -0.5..0.5
    of the eye's width from the eye's centre, toward the image's right and down the face. Measured
    in each eye's own frame (``eye_frame``, its image-left corner first), so head roll does not leak
    in and the two eyes' axes point the same way."""
    centres = [complex(eye_frame(lm[[*corners, iris], :2])[0][2]) - 0.5 for iris, corners in GAZE_EYES]
    centre = complex(np.mean(centres))
    return (centre.real, centre.imag)


def with_gaze_moved(lm: np.ndarray, shift: complex) -> np.ndarray:
    """``lm`` with both irises (centre and rim) moved by ``shift`` eye widths in each eye's frame
    (real: toward the image's right, imaginary: down the face), so ``gaze`` reads ``shift`` more."""
    moved = lm.copy()
    for iris, (left, right) in GAZE_EYES:
        step = shift * complex(*(lm[right, :2] - lm[left, :2]))
        moved[iris : iris + IRIS_POINTS, :2] += (step.real, step.imag)
    return moved


# --------------------------------------------------------------------------------------------------
# The canonical mesh as a surface: its triangles, and the holes it leaves at the eyes and the mouth

#: Each eye's lids as two chains from its image-left corner to its image-right corner (upper, lower);
#: together they go round the eye opening, the hole ``RIGHT_EYE`` / ``LEFT_EYE`` outlines.
RIGHT_EYE_UPPER = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133])
RIGHT_EYE_LOWER = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133])
LEFT_EYE_UPPER = np.array([362, 398, 384, 385, 386, 387, 388, 466, 263])
LEFT_EYE_LOWER = np.array([362, 382, 381, 380, 374, 373, 390, 249, 263])
#: Each eye's (upper lid, lower lid), corner to corner, the right eye first.
EYE_LIDS = ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER))
#: The inner lips as two chains from the image-left mouth corner to the image-right one (upper,
#: lower); together they go round the mouth opening, the hole ``INNER_LIPS`` outlines.
UPPER_INNER_LIP = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
LOWER_INNER_LIP = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
#: The lips as rings, from the inner lip outward: each ring's points from image left to image right
#: (the mouth corners left out), aligned column by column across the rings.
UPPER_LIP_RINGS = np.array(
    [
        [191, 80, 81, 82, 13, 312, 311, 310, 415],
        [183, 42, 41, 38, 12, 268, 271, 272, 407],
        [184, 74, 73, 72, 11, 302, 303, 304, 408],
        [185, 40, 39, 37, 0, 267, 269, 270, 409],
    ]
)
LOWER_LIP_RINGS = np.array(
    [
        [95, 88, 178, 87, 14, 317, 402, 318, 324],
        [96, 89, 179, 86, 15, 316, 403, 319, 325],
        [77, 90, 180, 85, 16, 315, 404, 320, 307],
        [146, 91, 181, 84, 17, 314, 405, 321, 375],
    ]
)
#: The lip–chin crease, below the middle five points of the lower lip's outer ring.
LIP_CHIN_CREASE = np.array([182, 83, 18, 313, 406])
#: Triangles of the canonical tesselation (``FACEMESH_TESSELATION``): the 898 of the canonical model
#: less the 14 + 14 + 18 that close the two eyes and the mouth, which the tesselation leaves open.
CANONICAL_TRIANGLES = 852


def triangles_from_edges(edges: Iterable[tuple[int, int]], outline: Sequence[int]) -> np.ndarray:
    """The faces ``(n, 3)`` of a triangulated surface given only its edges, consistently wound.

    A face is a 3-clique of the edge graph. Not every 3-clique is a face: three vertices joined in a
    ring around a fourth (a vertex of degree 3) form a separating triangle whose three edges each
    border two real faces already, so a clique all of whose edges lie in more than two cliques is
    dropped. The faces are wound consistently (two faces sharing an edge traverse it in opposite
    directions) and so that ``outline`` — the surface's outer boundary, clockwise on screen — is
    traversed forward: every face of a surface seen from the front then has a positive signed area
    ``(b - a) × (c - a)`` in image coordinates (y down).

    Raises ``ValueError`` if the edges do not describe an orientable manifold surface.
    """
    pairs = {(min(a, b), max(a, b)) for a, b in edges if a != b}
    neighbours: dict[int, set[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    cliques = sorted(
        {(a, b, c) for a, b in pairs for c in neighbours[a] & neighbours[b] if c > b}  # a < b < c
    )
    count: dict[tuple[int, int], int] = {}
    for a, b, c in cliques:
        for edge in ((a, b), (a, c), (b, c)):
            count[edge] = count.get(edge, 0) + 1
    faces = [t for t in cliques if min(count[(t[0], t[1])], count[(t[0], t[2])], count[(t[1], t[2])]) <= 2]
    by_edge: dict[tuple[int, int], list[int]] = {}
    for index, (a, b, c) in enumerate(faces):
        for edge in ((a, b), (a, c), (b, c)):
            by_edge.setdefault(edge, []).append(index)
    if any(len(sharing) > 2 for sharing in by_edge.values()):
        raise ValueError("the edges do not describe a manifold surface: an edge borders three faces")
    # Wind by breadth-first search over shared edges: a neighbour must traverse the edge backwards.
    wound: dict[int, tuple[int, int, int]] = {}
    for seed in range(len(faces)):
        if seed in wound:
            continue
        wound[seed] = faces[seed]
        queue = [seed]
        while queue:
            current = queue.pop()
            for u, v in _directed(wound[current]):
                for other in by_edge[(min(u, v), max(u, v))]:
                    if other == current:
                        continue
                    if other not in wound:
                        x, y, z = faces[other]
                        wound[other] = (x, z, y) if (u, v) in _directed(faces[other]) else (x, y, z)
                        queue.append(other)
                    elif (u, v) in _directed(wound[other]):
                        raise ValueError("the edges do not describe an orientable surface")
    triangles = np.array([wound[index] for index in range(len(faces))], dtype=np.int64)
    start = (int(outline[0]), int(outline[1]))
    if not any(start in _directed(wound[index]) for index in range(len(faces))):
        triangles = triangles[:, [0, 2, 1]]
    return triangles


def _directed(triangle: tuple[int, int, int]) -> tuple[tuple[int, int], ...]:
    """The three edges of a triangle in its winding order."""
    a, b, c = triangle
    return ((a, b), (b, c), (c, a))


@functools.cache
def canonical_triangles() -> np.ndarray:
    """The ``(852, 3)`` triangles of MediaPipe's canonical face mesh (Kartynnik et al., "Real-time
    Facial Surface Geometry from Monocular Video on Mobile GPUs", 2019) over the 468 mesh points,
    derived once per process from ``FACEMESH_TESSELATION``'s edges (``triangles_from_edges``) and
    wound to be positive on a face seen from the front. The eyes and the inner mouth are holes."""
    tesselation = mediapipe().solutions.face_mesh_connections.FACEMESH_TESSELATION
    triangles = triangles_from_edges(tesselation, FACE_OVAL)
    if len(triangles) != CANONICAL_TRIANGLES:
        raise RuntimeError(f"the canonical tesselation gave {len(triangles)} triangles")
    triangles.flags.writeable = False  # shared by every caller
    return triangles
