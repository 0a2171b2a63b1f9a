"""The eyes as lids over an eyeball: a closing eye is covered, not squeezed.

A mesh warp can only stretch and squeeze: lowering the upper lid compresses the iris and the white
into a slit that still reads as an open, squinting eye (FaceMesh re-detects it about half as closed
as intended). A real lid slides *over* the eyeball. So after the warp each eye is repainted from the
photo, in the eye's own frame (``face_model.eye_frame``: its corners at 0 and 1):

* inside the target opening, the eyeball, never compressed: each column keeps its height about the
  iris's level, so lids that close cut it off (the upper lid descends over the iris, as in a blink),
  and lids that open wider than the photo's stretch it to reach them (there is nothing hidden to
  reveal); the iris moves as a disc with the target iris centre (gaze), easing into the still white
  around it over one iris radius;
* above the opening, the upper lid, lashes and all, translated by the lid's travel as one piece
  (``_lid_map``): the warp would instead stretch the narrow band between lashes and crease into a
  grey smear. The lid's skin above that band takes up the travel, stretched gently up toward the
  brow as a real lid unfolds, so the crease does not leave a second lash line behind.

FaceMesh never reads a shut eye as shut: its lids stay about ``_SHUT_OPENNESS`` of the eye's width
apart (the sample's blink measures 0.08), so the driving motion says "shut" at that openness, not
at zero. The repaint draws openings from there down as shut, easing the gap toward it
(``face_model.drawn_gap``): a blink closes the photo's eye, and the output re-detected reads as
shut as the driving eye did.

Compositing a separately transformed layer of the photo through an opening follows the inner-mouth
transfer of Averbuch-Elor et al., "Bringing Portraits to Life" (SIGGRAPH Asia 2017).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from stillmotion.engine import face_model as fm
from stillmotion.engine.easing import smoothstep

#: Photo eyes less open than this (lid gap over width) show too little eyeball to repaint an opening
#: with: a photo with closed eyes keeps the warp's own rendering.
_MIN_PHOTO_OPENNESS = 0.12
#: How near a corner the iris centre may go, in eye widths (nearer, the disc would slide under the
#: lids' corner).
_IRIS_SIDE = 0.2
#: Height above its edge of the upper lid that slides as one piece (eye widths): the lashes and the
#: lid up to about its crease (0.2 did best of 0.06 to 0.45 on the quality benchmark's blinks).
_LID_BAND = 0.2
#: Width (eye widths) over which the repainted lid fades out toward each corner.
_CORNER_TAPER = 0.08
#: The lid skin above the sliding band stretches over at least this many times the lid's travel
#: (a stretch of at most 1.5), easing into the unmoved photo at its top.
_LID_SKIN_SPAN = 3.0
#: Openness (lid gap over eye width) at which FaceMesh reads an eye that is shut.
_SHUT_OPENNESS = 0.08


@dataclass(frozen=True)
class _Lids:
    """An eye's lids and iris centre in its own frame: each lid a function of ``x`` (points sorted)."""

    upper: tuple[np.ndarray, np.ndarray]
    lower: tuple[np.ndarray, np.ndarray]
    iris: complex
    rim: np.ndarray
    origin: complex
    unit: complex

    def gap(self) -> float:
        """The widest gap between the lids, in eye widths (the eye's openness)."""
        return float(np.max(np.interp(self.upper[0], *self.lower) - self.upper[1], initial=0.0))

    def opening(self) -> np.ndarray:
        """The opening's outline ``(n, 2)`` in image pixels: the upper lid, then the lower lid back."""
        z = np.concatenate([self.upper[0] + 1j * self.upper[1], (self.lower[0] + 1j * self.lower[1])[::-1]])
        points = self.origin + self.unit * z
        return np.stack([points.real, points.imag], 1)

    def with_gap(self, share: float) -> _Lids:
        """These lids with the upper lid lowered until each column's gap is ``share`` of what it is."""
        x, top = self.upper
        bottom = np.interp(x, *self.lower)
        lowered = bottom - share * np.maximum(bottom - top, 0.0)
        return replace(self, upper=(x, np.minimum(np.maximum(top, lowered), bottom)))


@dataclass(frozen=True)
class EyePaint:
    """One eye's repaint in one frame: the image window, where in the photo each of its pixels comes
    from (``(h, w, 2)`` float32, a ``cv2.remap`` map), and how much of it is repainted (``(h, w)``)."""

    rows: slice
    cols: slice
    map: np.ndarray
    alpha: np.ndarray


class _Eye:
    """Which landmarks make one eye, and where they lie for given landmarks."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray, iris: int):
        #: The opening going round: the upper lid left to right, the lower lid back.
        self.contour = np.concatenate([upper, lower[-2:0:-1]])
        self._ids = np.concatenate([upper[[0, -1]], upper, lower, iris + np.arange(5)])
        self._split = np.cumsum([len(upper), len(lower), 1])

    def lids(self, landmarks: np.ndarray) -> _Lids:
        z, origin, unit = fm.eye_frame(landmarks[self._ids, :2])
        upper, lower, iris, rim = np.split(z[2:], self._split)
        return _Lids(_by_x(upper), _by_x(lower), complex(iris[0]), rim, origin, unit)


def _by_x(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points.real)
    return points.real[order], points.imag[order]


@dataclass(frozen=True)
class _AtRest:
    """One eye as the photo shows it: which landmarks make it, its lids, their gap (its openness)
    and its iris radius (eye widths)."""

    eye: _Eye
    lids: _Lids
    gap: float
    radius: float


class EyeInterior:
    """Repaints each eye of a warped frame: the photo's eyeball in the target opening, the photo's
    upper lid slid over it (see the module)."""

    def __init__(self, photo: np.ndarray, photo_landmarks: np.ndarray):
        self._photo = photo
        irises = (fm.RIGHT_IRIS, fm.LEFT_IRIS)
        openness = fm.eye_openness(photo_landmarks)
        #: Each eye the photo shows open enough, as it is in the photo.
        self._eyes: list[_AtRest] = []
        for (upper, lower), iris, open_by in zip(fm.EYE_LIDS, irises, openness, strict=True):
            if open_by < _MIN_PHOTO_OPENNESS:
                continue
            eye = _Eye(upper, lower, iris)
            rest = eye.lids(photo_landmarks)
            self._eyes.append(_AtRest(eye, rest, rest.gap(), float(np.abs(rest.rim - rest.iris).mean())))

    def prepare(self, target: np.ndarray) -> list[EyePaint]:
        """What repainting the eyes takes for the target landmarks ``target``: all the geometry, so
        ``paint`` is left with one remap and one blend per eye (``animate`` prepares on its main
        thread, which has time to spare, and paints on the render threads, which have none)."""
        paints = []
        for eye in self._eyes:
            now = eye.eye.lids(target)
            gap = now.gap()
            if gap > 0:
                now = now.with_gap(fm.drawn_gap(gap, eye.gap, _SHUT_OPENNESS) / gap)
            paint = self._prepare_eye(eye, now)
            if paint is not None:
                paints.append(paint)
        return paints

    def paint(self, frame: np.ndarray, paints: list[EyePaint]) -> None:
        """Repaint ``frame`` (in place) as ``prepare`` worked out."""
        for paint in paints:
            layer = cv2.remap(
                self._photo, paint.map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
            )
            roi = frame[paint.rows, paint.cols]
            roi[:] = cv2.blendLinear(layer, roi, paint.alpha, 1.0 - paint.alpha)

    def apply(self, frame: np.ndarray, target: np.ndarray) -> None:
        """Repaint the eyes of ``frame`` (in place) for the target landmarks ``target``."""
        self.paint(frame, self.prepare(target))

    def _prepare_eye(self, eye: _AtRest, now: _Lids) -> EyePaint | None:
        rest, opening = eye.lids, now.opening()
        travel = float(np.max(np.abs(np.interp(now.upper[0], *rest.upper) - now.upper[1])))
        # What changes: the opening, the lid's band above its edge and the skin that stretches above.
        reach_up = _LID_BAND + max(_LID_BAND, _LID_SKIN_SPAN * travel)
        lifted = now.origin + now.unit * (now.upper[0] + 1j * (now.upper[1] - reach_up))
        reach = np.concatenate([opening, np.stack([lifted.real, lifted.imag], 1)])
        height, width = self._photo.shape[:2]
        x0, y0 = np.maximum(np.floor(reach.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(reach.max(0)).astype(int) + 3, [width, height])
        if x1 - x0 < 3 or y1 - y0 < 3:
            return None
        rows, cols = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        z = (cols + 1j * rows - now.origin) / now.unit
        across = np.clip(z.real, 0.0, 1.0)
        lids = _Columns(
            np.interp(across, *now.upper),
            np.interp(across, *now.lower),
            np.interp(across, *rest.upper),
            np.interp(across, *rest.lower),
        )
        lid, lid_share = _lid_map(z.imag, lids.top, lids.top - lids.rest_top)
        # Beyond the corners nothing of the lid moves: the warp's own pixels stay.
        lid_share *= np.clip(np.minimum(z.real, 1.0 - z.real) / _CORNER_TAPER, 0.0, 1.0)
        eyeball = _eyeball_map(z, lids, rest.iris, now.iris, eye.radius)
        # Antialiased opening: its edge pixels mix the two maps by how much of them lies inside.
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        corners = np.round((opening - [x0, y0]) * 16).astype(np.int32)
        cv2.fillPoly(inside, [corners], 255, cv2.LINE_AA, shift=4)
        cover = inside / 255.0
        source = rest.origin + rest.unit * (cover * eyeball + (1.0 - cover) * (z.real + 1j * lid))
        return EyePaint(
            slice(y0, y1),
            slice(x0, x1),
            np.stack([source.real, source.imag], -1).astype(np.float32),
            np.maximum(cover, lid_share).astype(np.float32),
        )


@dataclass(frozen=True)
class _Columns:
    """The lids' heights (eye frame) over each pixel's column: now, and in the photo."""

    top: np.ndarray
    bottom: np.ndarray
    rest_top: np.ndarray
    rest_bottom: np.ndarray


def _eyeball_map(
    z: np.ndarray, lids: _Columns, rest_iris: complex, iris: complex, radius: float
) -> np.ndarray:
    """Where in the photo's eye frame each pixel (``z``, target eye frame) of the opening takes the
    eyeball from, for the iris centre moved from ``rest_iris`` to ``iris``."""
    # The eyeball's level: the photo's iris centre, kept inside the photo's opening.
    gap = lids.rest_bottom - lids.rest_top
    level = np.clip(rest_iris.imag, lids.rest_top + 0.25 * gap, lids.rest_bottom - 0.25 * gap)
    v = z.imag
    above = v < level
    # A lid nearer the level than the photo's cuts the eyeball off (scale 1); one farther away
    # stretches the eyeball to reach it.
    reach = np.where(above, level - lids.top, lids.bottom - level)
    rest_reach = np.where(above, level - lids.rest_top, lids.rest_bottom - level)
    stretch = np.where(reach > rest_reach, rest_reach / np.maximum(reach, 1e-9), 1.0)
    source = z.real + 1j * (level + (v - level) * stretch)
    iris = complex(np.clip(iris.real, _IRIS_SIDE, 1 - _IRIS_SIDE), iris.imag)
    weight = smoothstep(2.0 - np.abs(z - iris) / max(radius, 1e-9))
    return source - (iris - rest_iris) * weight


def _lid_map(v: np.ndarray, top: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper lid moved down by ``drop`` (eye widths; up if negative): for each pixel at height
    ``v`` above the lid's edge at ``top``, the height in the photo's eye frame it shows, and how much
    of it is lid (0 below the edge).

    A band ``_LID_BAND`` high above the edge is the photo's lid, lashes and all, translated as one
    piece (it covers the eyeball as it comes down); above it, over ``_LID_SKIN_SPAN`` times the
    travel (and no less than the band), the translation eases out into the photo unmoved and the
    lid's pixels into the warp's: the lid's skin stretches there, by at most 1.5.
    """
    span = np.maximum(_LID_BAND, _LID_SKIN_SPAN * np.abs(drop))
    above = top - v
    share = np.where(above > 0, smoothstep(1.0 - (above - _LID_BAND) / span), 0.0)
    return v - drop * share, share
