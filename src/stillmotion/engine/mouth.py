"""The inner mouth the photo does not show.

When the target mouth opens wider than the photo's, warping alone only stretches the lips' inner
edge. The driving frame does show an inner mouth (teeth, tongue, the dark of the oral cavity): it is
mapped onto the target inner-lip polygon by the affine map between the two inner-lip contours, its
colours carried from the driving face's skin tone to the photo's (Reinhard et al., "Color Transfer
between Images", IEEE CG&A 2001, in OpenCV's 8-bit Lab), and blended in with a feathered mask — as
Averbuch-Elor et al. (2017) transfer the driving mouth interior.
"""

from __future__ import annotations

import cv2
import numpy as np

from stillmotion.engine import face_model as fm

#: Cheek and forehead points whose hull samples skin, clear of eyes, brows and lips.
_SKIN_PATCHES = (
    np.array([116, 117, 118, 50, 205, 187, 147, 123]),  # right cheek
    np.array([345, 346, 347, 280, 425, 411, 376, 352]),  # left cheek
    np.array([151, 108, 69, 104, 337, 299, 333]),  # forehead
)
#: Mouth opening (gap over width) over which the interior fades in once wider than the photo's.
_OPEN_RAMP = 0.08
#: Bounds of the lightness gain: low-contrast driving skin must not blow up the interior's contrast.
_GAIN_RANGE = (0.6, 1.6)
#: EMA weight of the newest frame in the driving skin statistics (steadies the colour transfer).
_STATS_MOMENTUM = 0.15


def skin_stats(rgb: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the face's skin in Lab, from cheek and forehead patches."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    for patch in _SKIN_PATCHES:
        cv2.fillConvexPoly(mask, cv2.convexHull(lm[patch, :2].astype(np.int32)), 255)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[mask > 0].astype(np.float32)
    if len(lab) < 16:
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    return lab.mean(0), np.maximum(lab.std(0), 1.0)


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine from ``src`` to ``dst`` points."""
    design = np.hstack([src, np.ones((len(src), 1))])
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return solution.T


class MouthInterior:
    """Fills the target mouth opening with the driving frame's inner mouth, colour-matched."""

    def __init__(self, photo: np.ndarray, photo_landmarks: np.ndarray, feather: float):
        self._photo_opening = fm.mouth_opening(photo_landmarks)
        self._photo_mean, self._photo_std = skin_stats(photo, photo_landmarks)
        self._feather = feather
        self._driving_stats: tuple[np.ndarray, np.ndarray] | None = None

    def _colour_transfer(self, driving: np.ndarray, driving_lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel gain and offset taking the driving skin's Lab statistics to the photo's."""
        mean, std = skin_stats(driving, driving_lm)
        if self._driving_stats is None:
            self._driving_stats = (mean, std)
        else:
            m0, s0 = self._driving_stats
            k = _STATS_MOMENTUM
            self._driving_stats = ((1 - k) * m0 + k * mean, (1 - k) * s0 + k * std)
        d_mean, d_std = self._driving_stats
        # Lightness is matched in mean and contrast; chroma only shifted, since scaling the small
        # chroma spread of skin would turn the mouth's reds into purples.
        gain = np.ones(3, np.float32)
        gain[0] = np.clip(self._photo_std[0] / d_std[0], *_GAIN_RANGE)
        return gain, self._photo_mean - gain * d_mean

    def apply(
        self, frame: np.ndarray, target: np.ndarray, driving: np.ndarray, driving_lm: np.ndarray
    ) -> None:
        """Blend the inner mouth into ``frame`` (in place) where the target mouth is open."""
        gain, offset = self._colour_transfer(driving, driving_lm)
        opening = fm.mouth_opening(target)
        # Only the share of the opening the photo does not show is new: a smiling photo keeps its
        # own teeth while its mouth opens a little more.
        weight = min((opening - self._photo_opening) / _OPEN_RAMP, 1.0) * (
            1.0 - self._photo_opening / opening
        )
        if weight <= 0.0:
            return
        polygon = target[fm.INNER_LIPS, :2]
        pad = int(np.ceil(2 * self._feather)) + 2
        height, width = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + pad, [width, height])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        to_roi = _affine(driving_lm[fm.INNER_LIPS, :2], polygon - [x0, y0])
        interior = cv2.warpAffine(
            driving, to_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        lab = cv2.cvtColor(interior, cv2.COLOR_RGB2LAB).astype(np.float32) * gain + offset
        interior = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
        # Feather inward only, so the blend never spills onto the lips.
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon - [x0, y0]).astype(np.int32)], 255)
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, round(self._feather / 2)))
        alpha = cv2.GaussianBlur(inner, (0, 0), self._feather).astype(np.float32) * (weight / 255.0)
        alpha = np.minimum(alpha, mask.astype(np.float32) / 255.0)[..., None]
        roi = frame[y0:y1, x0:x1]
        roi[:] = (roi * (1 - alpha) + interior * alpha + 0.5).astype(np.uint8)
