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
  balances; its shadows, whose colour is the driving camera's cast more than the mouth's, take the
  hue of the photo's lips (``_Shade``).

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

from collections.abc import Callable
from dataclasses import dataclass

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
#: Share of the skin's luma below which the cavity's pixels count as shadow (``_Shade``).
_SHADOW_LUMA = 0.6
#: Distance (inter-ocular distances) from a mouth corner within which the photo's corner wedge lies.
_CORNER_RADIUS = 0.08
#: Share of the lips' luma below which a pixel by a mouth corner belongs to the wedge.
_CORNER_DARK = 0.75
#: Opening past the photo's (gap over width) over which the corner wedges give way entirely: drawn
#: out, they become whiskers only as the mouth opens wide.
_CORNER_FADE = 0.25
#: Width (in feathers) of the soft edge of what the mouth draws, where it meets the lips (opening)
#: or the lips drawn closing over the teeth meet the warp's (closing).
_EDGE_SOFTNESS = 0.5
#: The driving mouth's window (``DrivingMouth``): the lips' box grown by this share of its longer
#: side on every side (the cavity is sampled inside the inner lips; the rest is room for the
#: smoothed landmarks and the blend's pad), and kept at most this many pixels on its longer side.
_WINDOW_MARGIN, _WINDOW_MAX_SIDE = 0.25, 96


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

    def edge_distances(self, s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far (pixels, positive inside the opening) the points ``(s, y)`` lie from the upper
        and from the lower inner lip, measured normal to each lip (a steep lip by a corner is
        nearer than the height above it)."""
        before, after = np.clip(s - 1e-3, 0.0, 1.0), np.clip(s + 1e-3, 0.0, 1.0)
        run = (after - before) * self.width

        def normal(curve: Callable[[np.ndarray], np.ndarray], height: np.ndarray) -> np.ndarray:
            rise = (curve(after) - curve(before)) / run
            return height / np.sqrt(1.0 + rise**2)

        return normal(self.upper, y - self.upper(s)), normal(self.lower, self.lower(s) - y)

    def point(self, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.origin + (s * self.width)[..., None] * self.along + y[..., None] * self.down


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 affine from ``src`` to ``dst`` points."""
    design = np.hstack([src, np.ones((len(src), 1))])
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return solution.T


@dataclass(frozen=True)
class DrivingMouth:
    """What the inner mouth takes from one driving frame: the pixels round its mouth and its skin
    colour. Pass 1 keeps one per frame as it tracks (``mouth_log``), so the video is decoded once."""

    pixels: np.ndarray
    """A window of the frame round the lips, RGB, scaled down when the mouth is large."""
    origin: np.ndarray
    """The window's top-left corner in frame pixels, ``(2,)``."""
    scale: np.ndarray
    """Window pixels per frame pixel, ``(2,)`` (x, y): 1 unless the window was scaled down."""
    skin: np.ndarray
    """The face's skin colour in the frame, RGB (``_skin_colour``)."""

    @classmethod
    def of(cls, frame: np.ndarray, landmarks: np.ndarray) -> DrivingMouth:
        """The mouth of ``frame``, whose face has ``landmarks`` (frame pixels)."""
        height, width = frame.shape[:2]
        lips = landmarks[fm.OUTER_LIPS, :2]
        low, high = lips.min(0), lips.max(0)
        margin = _WINDOW_MARGIN * float((high - low).max())
        x0, y0 = np.clip(np.floor(low - margin).astype(int), 0, [width - 1, height - 1])
        x1, y1 = np.clip(np.ceil(high + margin).astype(int) + 1, [x0 + 1, y0 + 1], [width, height])
        pixels = frame[y0:y1, x0:x1]
        shrink = max(pixels.shape[:2]) / _WINDOW_MAX_SIDE
        if shrink > 1:
            size = (max(1, round(pixels.shape[1] / shrink)), max(1, round(pixels.shape[0] / shrink)))
            scale = np.array(size, float) / [pixels.shape[1], pixels.shape[0]]
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        else:
            scale = np.ones(2)
        origin = np.array([x0, y0], float)
        return cls(np.ascontiguousarray(pixels), origin, scale, _skin_colour(frame, landmarks))

    def to_window(self, points: np.ndarray) -> np.ndarray:
        """Frame points ``(n, 2)`` in the window's pixels."""
        return (points - self.origin) * self.scale


@dataclass(frozen=True)
class Cavity:
    """The driving inner mouth in one frame's window: the driving mouth's pixels, the affine from
    them to the window, the per-channel gain into the photo's light (a ``cv2`` scalar), and its share
    per pixel."""

    pixels: np.ndarray
    to_window: np.ndarray
    gain: tuple[float, float, float, float]
    share: np.ndarray


@dataclass(frozen=True)
class MouthPaint:
    """The inner mouth of one frame, worked out: the image window, where in the photo the layer
    hanging from the upper lip and the one standing on the lower lip come from (``cv2.remap`` maps,
    ``(h, w, 2)`` float32), the lower layer's share, the driving cavity where the mouth opens (and the
    driving face was found), and how much of the window is drawn."""

    rows: slice
    cols: slice
    upper: np.ndarray
    lower: np.ndarray
    lower_share: np.ndarray
    cavity: Cavity | None
    alpha: np.ndarray
    corners: float
    """How far the photo's corner wedges have given way (0 to 1) in the texture the frame is warped
    from (``MouthInterior.texture``)."""


class MouthInterior:
    """Draws the inner mouth wherever the target opens wider than the photo, and the lips closing
    over the teeth wherever it is narrower (see the module)."""

    def __init__(self, photo: np.ndarray, photo_landmarks: np.ndarray, feather: float):
        self._photo = photo
        self._frame = _MouthFrame(photo_landmarks)
        self._feather = feather
        self._min_gap = _MIN_GAP * feather / 1.5
        self._skin = _skin_colour(photo, photo_landmarks)
        self._opening = fm.mouth_opening(photo_landmarks)
        lips, opening = _lips_and_opening(photo.shape[:2], photo_landmarks)
        self._shade = _Shade.of(photo, lips, self._skin)
        self._corners = _CornerShadows.of(photo, photo_landmarks, lips, opening)

    def texture(self, paint: MouthPaint | None, base: np.ndarray) -> np.ndarray:
        """The texture to warp a frame from: ``base`` (the photo as the warp samples it: its RGB,
        and any channels after those), its corner wedges given way as far as ``paint`` says (see
        the module)."""
        if paint is None or paint.corners <= 0.0:
            return base
        return self._corners.blend(base, paint.corners)

    def apply(
        self, frame: np.ndarray, target: np.ndarray, driving: np.ndarray, driving_lm: np.ndarray
    ) -> None:
        """Draw the inner mouth into ``frame`` (in place) for the target landmarks ``target``
        (``driving`` and ``driving_lm``: the driving frame and its landmarks)."""
        paint = self.prepare(target, DrivingMouth.of(driving, driving_lm), driving_lm)
        if paint is not None:
            self.paint(frame, paint)

    def prepare(
        self, target: np.ndarray, driving: DrivingMouth | None, driving_lm: np.ndarray
    ) -> MouthPaint | None:
        """All the geometry of drawing the mouth for the target landmarks ``target`` (``driving``
        and ``driving_lm``: the driving frame's mouth, ``None`` where its face was lost, and its
        landmarks), so ``paint`` is left with remaps and blends (``animate`` prepares on its main
        thread, as it does the eyes); ``None`` when the warp alone shows the photo's own mouth."""
        polygon = target[fm.INNER_LIPS, :2]
        pad = int(np.ceil(2 * self._feather)) + 2
        height, width = self._photo.shape[:2]
        x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + pad, [width, height])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
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
        opens = gap.max() >= self._min_gap
        if not (opens or closing):
            return None  # as wide as the photo: the warp alone shows the photo's own mouth
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
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [np.round(polygon - [x0, y0]).astype(np.int32)], 255)
        cavity, corners = None, 0.0
        if opens:
            # The cavity fades in over the first pixels of new opening, so a mouth that just parts
            # does not flash dark; strips and cavity meet with a soft edge.
            between = np.minimum(from_top, from_bottom) - cover - strip
            share = np.clip(gap / (4 * self._min_gap), 0.0, 1.0) * np.clip(0.5 + between / scale, 0.0, 1.0)
            share = cv2.GaussianBlur(share.astype(np.float32), (0, 0), self._feather / 2)
            if driving is not None:  # where the driving face was lost, the strips fill the opening
                to_window = _affine(driving.to_window(driving_lm[fm.INNER_LIPS, :2]), polygon - [x0, y0])
                gain = np.clip(self._skin / np.maximum(driving.skin, 1.0), *_GAIN_RANGE)
                cavity = Cavity(driving.pixels, to_window, (*(float(g) for g in gain), 0.0), share)
            corners = float(np.clip((opening - self._opening) / _CORNER_FADE, 0.0, 1.0))
        softness = _EDGE_SOFTNESS * self._feather
        if closing:
            # The lips drawn on both sides of their edges are the lips: the blend may spill onto
            # them, and must, or a closing gap a pixel or two high would never be drawn.
            grown = cv2.dilate(inside, np.ones((3, 3), np.uint8), iterations=max(1, round(self._feather)))
            alpha = cv2.GaussianBlur(grown, (0, 0), softness).astype(np.float32) / 255.0
        else:
            # Feather inward only, so the blend never spills onto the lips, and over about a pixel:
            # the cavity starts at the inner lip. A wider inward feather (it was eroded a pixel and
            # blurred over 1.5) leaves the warp's stretched lip showing inside the opening, and the
            # lips look thicker, the mouth less open (FaceMesh, too, read the inner lips short).
            alpha = cv2.GaussianBlur(inside, (0, 0), softness).astype(np.float32) / 255.0
            alpha = np.minimum(alpha, inside.astype(np.float32) / 255.0)
            # Blurred, the opening's tips (thinner than the feather) would fade and the drawn
            # mouth end short of its corners: across a thin opening the blend rises from each
            # lip's edge to full a quarter of the way across, so it reaches the corners.
            from_upper, from_lower = mouth.edge_distances(s, y)
            across = np.maximum(from_upper + from_lower, 1e-3) / 4
            tips = np.clip(np.minimum(from_upper, from_lower) / across, 0.0, 1.0).astype(np.float32)
            alpha = np.maximum(alpha, tips)
        return MouthPaint(
            slice(y0, y1),
            slice(x0, x1),
            self._frame.point(s, upper).astype(np.float32),
            self._frame.point(s, lower).astype(np.float32),
            np.clip(0.5 + lower_by / scale, 0.0, 1.0).astype(np.float32),
            cavity,
            alpha,
            corners,
        )

    def paint(self, frame: np.ndarray, paint: MouthPaint) -> None:
        """Draw the mouth into ``frame`` (in place) as ``prepare`` worked out; OpenCV calls only, which
        release the GIL (the render threads run side by side)."""
        upper = cv2.remap(self._photo, paint.upper, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        lower = cv2.remap(self._photo, paint.lower, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        interior = cv2.blendLinear(lower, upper, paint.lower_share, 1.0 - paint.lower_share)
        cavity = paint.cavity
        if cavity is not None:
            mapped = cv2.warpAffine(
                cavity.pixels,
                cavity.to_window,
                interior.shape[1::-1],
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT101,
            )
            lit = self._shade(cv2.multiply(mapped, cavity.gain))  # in the photo's light; saturates at 255
            interior = cv2.blendLinear(lit, interior, cavity.share, 1.0 - cavity.share)
        roi = frame[paint.rows, paint.cols]
        roi[:] = cv2.blendLinear(interior, roi, paint.alpha, 1.0 - paint.alpha)


@dataclass(frozen=True)
class _Shade:
    """The hue of the mouth's shadows: the photo's lips', darkened.

    The cavity's dark pixels carry the driving camera's cast, not the mouth's colour (a car's
    window light leaves carphone's mouth shadows blue-grey), and the skin gains bring that cast into
    the photo's light as it is: the opened mouth reads navy. Light reaching the inside of a mouth
    has passed the lips, so its shadows are the lips' hue: a pixel below ``_SHADOW_LUMA`` of the
    skin's luma turns toward the lips' colour scaled to its own luma, in proportion to its darkness
    (all the way at black); brighter ones (teeth, a lit tongue) keep their own colour.
    """

    tint: tuple[float, float, float, float]
    """The lips' RGB over their luma (a ``cv2`` scalar): a grey of luma y becomes the lips' hue
    at luma y when multiplied by it."""
    threshold: float
    """Luma (0–255) below which a pixel takes on the lips' hue."""

    @classmethod
    def of(cls, photo: np.ndarray, lips: np.ndarray, skin: np.ndarray) -> _Shade:
        """``lips``: the photo's lips mask (``_lips_and_opening``); ``skin``: its skin's RGB."""
        colour = np.median(photo[lips > 0], axis=0) if lips.any() else skin
        tint = colour / max(_luma(colour), 1.0)
        return cls((*(float(t) for t in tint), 0.0), _SHADOW_LUMA * _luma(skin))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` with its shadows in the lips' hue (OpenCV calls only: the render threads run it)."""
        luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        hued = cv2.multiply(cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB), self.tint)
        darkness = cv2.max(cv2.subtract(self.threshold, luma.astype(np.float32)), 0.0)
        return cv2.blendLinear(hued, rgb, darkness, cv2.subtract(self.threshold, darkness))


@dataclass(frozen=True)
class _CornerShadows:
    """The photo's dark wedges at its mouth corners, and the lips and skin that replace them (see
    the module): ``patches`` are ``(rows, cols, inpainted pixels)`` windows of the photo."""

    patches: tuple[tuple[slice, slice, np.ndarray], ...]

    @classmethod
    def of(
        cls, photo: np.ndarray, landmarks: np.ndarray, lips: np.ndarray, opening: np.ndarray
    ) -> _CornerShadows:
        """``lips``, ``opening``: the photo's masks of its lips and of the opening between them
        (``_lips_and_opening``)."""
        if not lips.any():
            return cls(())
        height, width = photo.shape[:2]
        luma = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
        dark = _CORNER_DARK * float(np.median(luma[lips > 0]))
        radius = _CORNER_RADIUS * fm.interocular(landmarks)
        reach = int(np.ceil(radius)) + 4  # the disc, its dilation and Telea's neighbourhood
        patches = []
        for corner in fm.LIP_CORNERS:
            cx, cy = landmarks[list(corner), :2].mean(0)
            x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, width)
            y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, height)
            if x1 <= x0 or y1 <= y0:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1]
            wedge = ((xs - cx) ** 2 + (ys - cy) ** 2 < radius**2) & (luma[y0:y1, x0:x1] < dark)
            wedge &= opening[y0:y1, x0:x1] == 0  # inside the lips, the cavity is drawn over it
            if not wedge.any():
                continue
            mask = cv2.dilate(wedge.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
            filled = cv2.inpaint(np.ascontiguousarray(photo[y0:y1, x0:x1]), mask, 3, cv2.INPAINT_TELEA)
            patches.append((slice(y0, y1), slice(x0, x1), filled))
        return cls(tuple(patches))

    def blend(self, texture: np.ndarray, share: float) -> np.ndarray:
        """A copy of ``texture`` (the photo's RGB, then any further channels, left as they are)
        with its wedges ``share`` (0 to 1) of the way to the inpainted fill."""
        if not self.patches:
            return texture
        blended = texture.copy()
        for rows, cols, filled in self.patches:
            rgb = np.ascontiguousarray(texture[rows, cols, :3])
            blended[rows, cols, :3] = cv2.addWeighted(rgb, 1.0 - share, filled, share, 0.0)
        return blended


def _lips_and_opening(shape: tuple[int, ...], landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (1 inside, ``uint8``) of the lips (between the outer and the inner contour) and of the
    opening between them, on an image of ``shape``."""
    lips = np.zeros(shape, np.uint8)
    cv2.fillPoly(lips, [np.round(landmarks[fm.OUTER_LIPS, :2]).astype(np.int32)], 1)
    opening = np.zeros_like(lips)
    cv2.fillPoly(opening, [np.round(landmarks[fm.INNER_LIPS, :2]).astype(np.int32)], 1)
    return lips & (1 - opening), opening


def _luma(rgb: np.ndarray) -> float:
    """The luma of one RGB colour, by the same conversion ``_Shade`` applies to pixels (ITU-R BT.601,
    ``cv2.COLOR_RGB2GRAY``)."""
    return float(cv2.cvtColor(np.float32(rgb).reshape(1, 1, 3), cv2.COLOR_RGB2GRAY)[0, 0])


def _skin_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Median RGB of the skin points (``_SKIN``), each a small patch around its landmark."""
    height, width = image.shape[:2]
    radius = max(1, round(0.02 * fm.interocular(landmarks)))
    centres = np.round(landmarks[_SKIN, :2]).astype(int)
    # Every patch's bounds at once: this runs on every frame, and a clip per point costs more.
    x0, y0 = np.clip(centres - radius, 0, [width, height]).T.tolist()
    x1, y1 = np.clip(centres + radius + 1, 0, [width, height]).T.tolist()
    samples = [
        image[top:bottom, left:right].reshape(-1, 3)
        for left, top, right, bottom in zip(x0, y0, x1, y1, strict=True)
        if right > left and bottom > top
    ]
    if not samples:
        return np.full(3, 128.0)
    return np.median(np.concatenate(samples), axis=0).astype(np.float64)
