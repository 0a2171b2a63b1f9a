"""The inner mouth the photo does not show.

When the target mouth opens wider than the photo's, warping alone would stretch whatever the photo
shows between its lips (teeth of a smile, or just the lips' inner edge) into a tall smear. Instead,
in the mouth's own frame (the axis through its corners), every column of the opening is split in
three, as a real mouth is:

* the photo's upper inner mouth (upper teeth), attached to the target upper lip at its own height;
* the photo's lower inner mouth (lower teeth), attached to the target lower lip;
* between them, the newly opened cavity: the driving frame's inner mouth (tongue, teeth, shading),
  mapped by the affine between the two inner-lip contours and brought into the photo's light by a
  gain per colour channel, the ratio of the photo's skin colour to the driving face's (a diagonal,
  von Kries-type adaptation: Finlayson, Drew and Funt, "Diagonal transforms suffice for color
  constancy", ICCV 1993). The cavity keeps its own darkness *relative to the skin* around it, so a
  dark mouth stays dark and a lit tongue stays lit, whatever the two videos' exposures and white
  balances.

A photo with closed lips has no teeth strips: the cavity then fills the whole opening. This follows
the transfer of the driving mouth interior in Averbuch-Elor et al., "Bringing Portraits to Life"
(SIGGRAPH Asia 2017), with the photo's own teeth kept where it shows them.

When the target mouth is *narrower* than the photo's (a smile with parted lips driven toward
closed lips), the warp would squeeze the teeth into a white line. Instead the lips close over them
as lids do over an eye (``eyes``): each lip's edge is continued into the opening (its pixels
mirrored about the edge), covering what the drawn gap (``face_model.drawn_gap``, shut at
``_CLOSED_OPENING``) leaves hidden, and the teeth show uncompressed in what is left.
"""

from __future__ import annotations

import cv2
import numpy as np

from stillmotion.engine import face_model as fm

#: Cheek and forehead points whose colour is the face's skin under its light: clear of lips, eyes,
#: brows and beard line.
_SKIN = np.array([50, 280, 101, 330, 118, 347, 205, 425, 108, 337, 151, 9])
#: Bounds on the per-channel gain from the driving skin to the photo's (a cast stronger than this is
#: a mis-sample, not a light).
_GAIN_RANGE = (0.4, 2.5)
#: Openings (target gap minus photo gap, pixels at 720p) below which nothing is drawn.
_MIN_GAP = 1.0
#: Mouth opening (gap over width) drawn as closed lips: the sample's closed driving lips arrive at
#: 0.02 to 0.03 once retargeted (FaceMesh reads them at 0.003; the motion's smoothing and the photo's
#: own lip shape leave the rest).
_CLOSED_OPENING = 0.03


class _MouthFrame:
    """Coordinates along a mouth (``s``: 0 at one corner, 1 at the other) and across it (``y``,
    pixels toward the chin), with the inner lips as functions of ``s``."""

    def __init__(self, lm: np.ndarray):
        left, right = lm[fm.MOUTH_LEFT, :2], lm[fm.MOUTH_RIGHT, :2]
        axis = right - left
        self.width = max(float(np.linalg.norm(axis)), 1e-6)
        self.along = axis / self.width
        self.down = np.array([-self.along[1], self.along[0]])
        if self.down @ (lm[fm.CHIN, :2] - left) < 0:
            self.down = -self.down
        self.origin = left
        self._upper = self._curve(lm[fm.UPPER_INNER_LIP, :2])
        self._lower = self._curve(lm[fm.LOWER_INNER_LIP, :2])

    def _curve(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = points - self.origin
        s, y = rel @ self.along / self.width, rel @ self.down
        order = np.argsort(s)
        return s[order], y[order]

    def upper(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, *self._upper)

    def lower(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, *self._lower)

    def coordinates(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = points - self.origin
        return rel @ self.along / self.width, rel @ self.down

    def point(self, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.origin + (s * self.width)[..., None] * self.along + y[..., None] * self.down


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine from ``src`` to ``dst`` points."""
    design = np.hstack([src, np.ones((len(src), 1))])
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return solution.T


class MouthInterior:
    """Draws the inner mouth wherever the target opens wider than the photo."""

    def __init__(self, photo: np.ndarray, photo_landmarks: np.ndarray, feather: float):
        self._photo = photo
        self._frame = _MouthFrame(photo_landmarks)
        self._feather = feather
        self._min_gap = _MIN_GAP * feather / 1.5
        self._skin = _skin_colour(photo, photo_landmarks)
        self._opening = fm.mouth_opening(photo_landmarks)

    def apply(
        self, frame: np.ndarray, target: np.ndarray, driving: np.ndarray, driving_lm: np.ndarray
    ) -> None:
        """Draw the inner mouth into ``frame`` (in place) where the target opens wider than the photo,
        or the lips closing over it where it is narrower."""
        polygon = target[fm.INNER_LIPS, :2]
        pad = int(np.ceil(2 * self._feather)) + 2
        height, width = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + pad, [width, height])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        mouth = _MouthFrame(target)
        grid = np.stack(np.meshgrid(np.arange(x0, x1), np.arange(y0, y1)), -1).astype(np.float64)
        s, y = mouth.coordinates(grid)
        s = np.clip(s, 0.0, 1.0)
        top, bottom = mouth.upper(s), mouth.lower(s)
        photo_top, photo_bottom = self._frame.upper(s), self._frame.lower(s)
        # Lengths along the mouth scale with its width; heights are kept in photo pixels.
        scale = self._frame.width / mouth.width
        strip = np.maximum(photo_bottom - photo_top, 0.0) / 2
        # Each lip covers this much (photo pixels) of the target opening; what is left is drawn.
        opening = fm.mouth_opening(target)
        hidden = 1.0 - fm.drawn_gap(opening, self._opening, _CLOSED_OPENING) / max(opening, 1e-9)
        cover = hidden * np.maximum(bottom - top, 0.0) * scale / 2
        gap = (bottom - top) * scale - 2 * (cover + strip)
        closing = cover.max() >= 0.5
        if gap.max() < self._min_gap and not closing:
            return  # as wide as the photo: the warp alone shows the photo's own mouth
        from_top = (y - top) * scale
        from_bottom = (bottom - y) * scale
        # Two layers: what hangs from the upper lip (its edge continued over the cover, then the
        # upper teeth) and what stands on the lower lip. The lower one shows inside its lip's cover
        # and in its strip below the upper strip, with a pixel's antialiased edge between them.
        upper = np.where(from_top < cover, photo_top - np.abs(from_top), photo_top + from_top - cover)
        lower = np.where(
            from_bottom < cover, photo_bottom + np.abs(from_bottom), photo_bottom - from_bottom + cover
        )
        lower_by = np.maximum(
            cover - from_bottom, np.minimum(cover + strip - from_bottom, from_top - cover - strip)
        )
        lower_share = np.clip(0.5 + lower_by / scale, 0.0, 1.0)[..., None]
        teeth = self._rows(s, upper) * (1 - lower_share) + self._rows(s, lower) * lower_share
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [np.round(polygon - [x0, y0]).astype(np.int32)], 255)
        interior = teeth
        if gap.max() >= self._min_gap:
            cavity = self._cavity(driving, driving_lm, polygon - [x0, y0], (x1 - x0, y1 - y0))
            # The cavity fades in over the first pixels of new opening, so a mouth that just parts
            # does not flash dark; strips and cavity meet with a soft edge.
            between = np.minimum(from_top, from_bottom) - cover - strip
            cavity_alpha = np.clip(gap / (4 * self._min_gap), 0.0, 1.0) * np.clip(
                0.5 + between / scale, 0.0, 1.0
            )
            cavity_alpha = cv2.GaussianBlur(cavity_alpha.astype(np.float32), (0, 0), self._feather / 2)
            interior = teeth * (1 - cavity_alpha[..., None]) + cavity * cavity_alpha[..., None]
        if closing:
            # The lips drawn on both sides of their edges are the lips: the blend may spill onto
            # them, and must, or a closing gap a pixel or two high would never be drawn.
            grown = cv2.dilate(inside, np.ones((3, 3), np.uint8), iterations=max(1, round(self._feather)))
            alpha = cv2.GaussianBlur(grown, (0, 0), self._feather / 2).astype(np.float32)[..., None] / 255.0
        else:
            # Feather inward only, so the blend never spills onto the lips.
            shrunk = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=max(1, round(self._feather / 2)))
            alpha = cv2.GaussianBlur(shrunk, (0, 0), self._feather).astype(np.float32) / 255.0
            alpha = np.minimum(alpha, inside.astype(np.float32) / 255.0)[..., None]
        roi = frame[y0:y1, x0:x1]
        roi[:] = np.clip(roi * (1 - alpha) + interior * alpha + 0.5, 0, 255).astype(np.uint8)

    def _rows(self, s: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The photo sampled at mouth-frame coordinates ``s`` (along) and ``rows`` (down), float."""
        source = self._frame.point(s, rows).astype(np.float32)
        return cv2.remap(
            self._photo, source, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        ).astype(np.float32)

    def _cavity(
        self, driving: np.ndarray, driving_lm: np.ndarray, polygon: np.ndarray, size: tuple[int, int]
    ) -> np.ndarray:
        """The driving inner mouth mapped onto ``polygon`` (ROI coordinates), in the photo's light."""
        to_roi = _affine(driving_lm[fm.INNER_LIPS, :2], polygon)
        warped = cv2.warpAffine(
            driving, to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        gain = np.clip(self._skin / np.maximum(_skin_colour(driving, driving_lm), 1.0), *_GAIN_RANGE)
        return np.minimum(warped.astype(np.float32) * gain.astype(np.float32), 255.0)


def _skin_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Median RGB of the skin points (``_SKIN``), each a small patch around its landmark."""
    height, width = image.shape[:2]
    radius = max(1, round(0.02 * fm.interocular(landmarks)))
    samples = []
    for x, y in np.round(landmarks[_SKIN, :2]).astype(int):
        x0, x1 = np.clip([x - radius, x + radius + 1], 0, width)
        y0, y1 = np.clip([y - radius, y + radius + 1], 0, height)
        if x1 > x0 and y1 > y0:
            samples.append(image[y0:y1, x0:x1].reshape(-1, 3))
    if not samples:
        return np.full(3, 128.0)
    return np.median(np.concatenate(samples), axis=0).astype(np.float64)
