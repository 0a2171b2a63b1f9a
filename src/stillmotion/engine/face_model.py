"""Facts about the MediaPipe FaceMesh topology (478 points with ``refine_landmarks``) and the
measures the engine takes on it: head angles, mouth opening, eye openness, gaze, rigid alignment.

Landmark indices follow MediaPipe's canonical face mesh (Kartynnik et al., "Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs", 2019) and its iris extension (Ablavatski et al., 2020).
Landmark arrays are ``(478, 3)`` float arrays in pixels: x right, y down, z away from the camera in the
same units as x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

#: Eyelid pairs (upper, lower) across each eye and its corners (outer, inner); "right"/"left" are the
#: subject's.
RIGHT_EYE_LIDS = ((159, 145), (158, 153), (160, 144))
LEFT_EYE_LIDS = ((386, 374), (385, 380), (387, 373))
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
RIGHT_IRIS, LEFT_IRIS = 468, 473  # iris centres; the 4 points after each are on the iris rim

FOREHEAD, CHIN, RIGHT_TEMPLE, LEFT_TEMPLE = 10, 152, 234, 454

#: Eye contours (lids and corners), going round each eye.
RIGHT_EYE = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246])
LEFT_EYE = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466])
IRISES = np.arange(468, 478)
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


def mouth_opening(lm: np.ndarray) -> float:
    """Inner-lip gap over mouth width: 0 closed, about 0.5 to 0.8 wide open."""
    gap = np.linalg.norm(lm[UPPER_INNER_LIP_MID, :2] - lm[LOWER_INNER_LIP_MID, :2])
    width = np.linalg.norm(lm[MOUTH_LEFT, :2] - lm[MOUTH_RIGHT, :2])
    return float(gap / max(width, 1e-6))


def _eye_openness(lm: np.ndarray, lids: tuple[tuple[int, int], ...], corners: tuple[int, int]) -> float:
    gap = np.mean([np.linalg.norm(lm[a, :2] - lm[b, :2]) for a, b in lids])
    width = np.linalg.norm(lm[corners[0], :2] - lm[corners[1], :2])
    return float(gap / max(width, 1e-6))


def eye_openness(lm: np.ndarray) -> tuple[float, float]:
    """(right, left) lid gap over eye width: about 0.25 to 0.35 open, under 0.1 closed."""
    return (
        _eye_openness(lm, RIGHT_EYE_LIDS, RIGHT_EYE_CORNERS),
        _eye_openness(lm, LEFT_EYE_LIDS, LEFT_EYE_CORNERS),
    )


def gaze(lm: np.ndarray) -> tuple[float, float]:
    """Iris position within the eyes, averaged over both: (horizontal, vertical), each about -0.5..0.5
    of the eye's width, measured along the eye's own axis so head roll does not leak in."""
    values = []
    for iris, (outer, inner) in ((RIGHT_IRIS, RIGHT_EYE_CORNERS), (LEFT_IRIS, LEFT_EYE_CORNERS)):
        a, b = lm[outer, :2], lm[inner, :2]
        axis = b - a
        length = max(float(np.linalg.norm(axis)), 1e-6)
        unit = axis / length
        normal = np.array([-unit[1], unit[0]])
        rel = lm[iris, :2] - (a + b) / 2
        h = float(rel @ unit) / length
        values.append((h if iris == RIGHT_IRIS else -h, float(rel @ normal) / length))
    return (float(np.mean([v[0] for v in values])), float(np.mean([v[1] for v in values])))
