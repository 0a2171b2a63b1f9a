"""The eyes as lids over an eyeball: a closing eye is covered, not squeezed.

A mesh warp can only stretch and squeeze: lowering the upper lid compresses the iris and the white
into a slit that still reads as an open, squinting eye (FaceMesh re-detects it about half as closed
as intended). A real lid slides *over* the eyeball. So after the warp each eye is repainted from the
photo, in the eye's own frame (``face_model.eye_frame``: its corners at 0 and 1):

* inside the target opening, the eyeball, never compressed: each column keeps its height about the
  iris's level, so lids that close cut it off (the upper lid descends over the iris, as in a blink);
* the white behind the iris comes from a *plate*, the photo with each iris painted out once (the
  white beside it carried across): lids that open wider than the photo's stretch that white to
  reach them, and where the iris moves away (gaze) the white it uncovers shows, not the iris's own
  edge dragged along. The iris itself moves as a round disc with the target iris centre (up and
  down ``_VERTICAL_GAZE_GAIN`` times as far) and is never stretched; its top, hidden under the
  photo's lid, is mirrored from its lower half when a wider eye or a downward glance shows it;
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
#: Radius (iris radii) within which the plate's white replaces the iris, and beyond which the
#: repaint shows no iris at all.
_PLATE_RADIUS, _IRIS_REACH = 1.25, 2.0
#: Within how many iris radii of its centre the iris is taken to be radially symmetric (its rim
#: blurs into the white and the lids, so is not mirrored).
_MIRROR_REACH = 0.9
#: Over how many iris radii the mirror's reach eases out.
_EASE = 0.2
#: Over how many pixels outside the photo's opening a source point of the iris eases from shown to
#: hidden.
_SHOWN_FADE_PX = 1.0
#: Openness (lid gap over eye width) at which FaceMesh reads an eye that is shut.
_SHUT_OPENNESS = 0.08
#: How far the iris is drawn up or down from the photo's, per eye width the target iris moves that
#: way (sideways it is drawn as it moves). An iris that the lids cut off at its top and bottom shows
#: a vertical move mostly as which part of it they hide, so drawn as far as meant it shows less of
#: it than of a sideways move. Measured where the truth is known, carphone's reference frame driven
#: by its own clip (``bench --quality``'s self-reenactment): FaceMesh read the output's gaze against
#: the real frames' at a slope of 0.43 up and down and 0.59 sideways; drawn 1.8 times as far up and
#: down, at 0.61 and 0.60 (the vertical gaze's error against the real frames 0.0150 -> 0.0120 eye
#: widths rms, its r 0.77 -> 0.85; 1.5: 0.56, 2.2: 0.72).
_VERTICAL_GAZE_GAIN = 1.8


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

    def clearance(self, z: np.ndarray) -> np.ndarray:
        """How far inside the opening each point ``z`` (eye frame) lies, in eye widths: its distance
        down from the upper lid or up from the lower, whichever is less (negative outside)."""
        x = np.clip(z.real, 0.0, 1.0)
        return np.minimum(z.imag - np.interp(x, *self.upper), np.interp(x, *self.lower) - z.imag)

    def frame_of(self, rows: slice, cols: slice) -> np.ndarray:
        """Each pixel of the image window ``rows`` x ``cols`` in this eye's frame."""
        y, x = np.mgrid[rows, cols].astype(np.float64)
        return (x + 1j * y - self.origin) / self.unit

    def opening(self) -> np.ndarray:
        """The opening's outline ``(n, 2)`` in image pixels: the upper lid, then the lower lid back."""
        z = np.concatenate([self.upper[0] + 1j * self.upper[1], (self.lower[0] + 1j * self.lower[1])[::-1]])
        return _xy(self.origin + self.unit * z)

    def with_gap(self, share: float) -> _Lids:
        """These lids with the upper lid lowered until each column's gap is ``share`` of what it is."""
        x, top = self.upper
        bottom = np.interp(x, *self.lower)
        lowered = bottom - share * np.maximum(bottom - top, 0.0)
        return replace(self, upper=(x, np.minimum(np.maximum(top, lowered), bottom)))


@dataclass(frozen=True)
class EyePaint:
    """One eye's repaint in one frame: the image window, where in the photo each of its pixels comes
    from (``(h, w, 2)`` float32 ``cv2.remap`` maps: the iris and lid ``map`` into the photo, the
    ``white_map`` into its iris-free plate), how much of each pixel is the white (``white``) and how
    much of it is repainted at all (``alpha``), each ``(h, w)``."""

    rows: slice
    cols: slice
    map: np.ndarray
    white_map: np.ndarray
    white: np.ndarray
    alpha: np.ndarray


class _Eye:
    """Which landmarks make one eye, and where they lie for given landmarks."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray, iris: int):
        #: The opening going round: the upper lid left to right, the lower lid back.
        self.contour = np.concatenate([upper, lower[-2:0:-1]])
        self._ids = np.concatenate([upper[[0, -1]], upper, lower, iris + np.arange(fm.IRIS_POINTS)])
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
        #: The photo with each iris replaced by the white beside it: what the eyeball is behind the
        #: iris, for a white that stretches to lids opened wider than the photo's.
        self._plate = photo.copy()
        for eye in self._eyes:
            _remove_iris(self._plate, photo, eye)

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
            shift = now.iris - eye.lids.iris
            now = replace(now, iris=eye.lids.iris + shift.real + 1j * _VERTICAL_GAZE_GAIN * shift.imag)
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
            white = cv2.remap(
                self._plate, paint.white_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
            )
            layer = cv2.blendLinear(white, layer, paint.white, 1.0 - paint.white)
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
        rows, cols = _window(np.concatenate([opening, _xy(lifted)]), self._photo.shape)
        if rows.stop - rows.start < 3 or cols.stop - cols.start < 3:
            return None
        z = now.frame_of(rows, cols)
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
        white, iris, iris_share = _eyeball_map(z, lids, rest, now.iris, eye.radius)
        # Antialiased opening: its edge pixels mix the two maps by how much of them lies inside.
        inside = np.zeros(z.shape, np.uint8)
        corners = np.round((opening - [cols.start, rows.start]) * 16).astype(np.int32)
        cv2.fillPoly(inside, [corners], 255, cv2.LINE_AA, shift=4)
        cover = inside / 255.0
        source = rest.origin + rest.unit * (cover * iris + (1.0 - cover) * (z.real + 1j * lid))
        white = rest.origin + rest.unit * white
        return EyePaint(
            rows,
            cols,
            _xy(source).astype(np.float32),
            _xy(white).astype(np.float32),
            (cover * (1.0 - iris_share)).astype(np.float32),
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
    z: np.ndarray, lids: _Columns, rest: _Lids, iris: complex, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where in the photo's eye frame each pixel (``z``, target eye frame) of the opening takes the
    eyeball from, for the iris centre moved from the photo's (``rest.iris``) to ``iris``: the white
    (from the iris-free plate), the iris (from the photo), and the iris's share of each pixel.

    The white stretches to reach lids opened wider than the photo's; the iris does not: it is a
    disc, moved whole with the gaze. Where the disc's source lies outside the photo's opening (its
    top, hidden under the photo's lid, shown by an eye opening wider or glancing down), it is taken
    from its mirror image across the iris's horizontal diameter: the iris is radially symmetric,
    and its lower half is the part a lid hides least. Only within ``_MIRROR_REACH`` of its centre:
    the rim blurs into the white and carries catchlights (carphone's, mirrored, drew a bright streak
    under the lid). Where neither is shown, the iris's interior is the stretched eyeball, and
    beyond it the plate's white.
    """
    # The eyeball's level: the photo's iris centre, kept inside the photo's opening.
    gap = lids.rest_bottom - lids.rest_top
    level = np.clip(rest.iris.imag, lids.rest_top + 0.25 * gap, lids.rest_bottom - 0.25 * gap)
    v = z.imag
    above = v < level
    # A lid nearer the level than the photo's cuts the eyeball off (scale 1); one farther away
    # stretches the eyeball to reach it.
    reach = np.where(above, level - lids.top, lids.bottom - level)
    rest_reach = np.where(above, level - lids.rest_top, lids.rest_bottom - level)
    stretch = np.where(reach > rest_reach, rest_reach / np.maximum(reach, 1e-9), 1.0)
    white = z.real + 1j * (level + (v - level) * stretch)
    iris = complex(np.clip(iris.real, _IRIS_SIDE, 1 - _IRIS_SIDE), iris.imag)
    disc = z - (iris - rest.iris)
    mirror = disc.real + 1j * (2 * rest.iris.imag - disc.imag)
    # How much of each source the photo shows: 1 inside its opening, easing to 0 outside. A pixel
    # on the target opening's antialiased edge may take its source from as far outside the photo's
    # (so at rest, where the two edges are one, nothing changes).
    edge = np.minimum(np.minimum(v - lids.top, lids.bottom - v), 0.0)
    fade = _SHOWN_FADE_PX / abs(rest.unit)
    shown, mirror_shown = (smoothstep(1.0 + (rest.clearance(p) - edge) / fade) for p in (disc, mirror))
    mirror_shown *= smoothstep((_MIRROR_REACH - np.abs(mirror - rest.iris) / max(radius, 1e-9)) / _EASE)
    hidden = mirror_shown * mirror + (1.0 - mirror_shown) * (white - (iris - rest.iris))
    source = shown * disc + (1.0 - shown) * hidden
    # The iris covers all the plate's repainted disc, easing into the white beyond it; past the
    # mirror's reach, only where the photo shows what lies there (else the plate's white, not a
    # stretched iris).
    out = np.abs(z - iris) / max(radius, 1e-9)
    share = smoothstep((_IRIS_REACH - out) / (_IRIS_REACH - _PLATE_RADIUS))
    found = shown + (1.0 - shown) * mirror_shown
    disc_itself = smoothstep((_MIRROR_REACH - out) / _EASE)
    return white, source, share * (found + (1.0 - found) * disc_itself)


def _remove_iris(plate: np.ndarray, photo: np.ndarray, eye: _AtRest) -> None:
    """Paint over the iris of ``eye`` in ``plate`` (in place) with the white beside it: each point
    within ``_PLATE_RADIUS`` iris radii of its centre and inside the opening takes the photo
    interpolated, along the eye's axis, between the two points that far out on either side (each
    kept inside the opening), easing back into the photo at the disc's rim."""
    rest = eye.lids
    reach = _PLATE_RADIUS * eye.radius
    corners = rest.origin + rest.unit * (rest.iris + reach * np.array([-1 - 1j, 1 + 1j]))
    rows, cols = _window(_xy(corners), photo.shape)
    if rows.stop - rows.start < 2 or cols.stop - cols.start < 2:
        return
    z = rest.frame_of(rows, cols)
    # Each point's height within the opening, as a share of the opening's height over its column:
    # the side points are taken at the same share, so the lids' shadows carry across.
    across = np.clip(z.real, 0.0, 1.0)
    top, bottom = np.interp(across, *rest.upper), np.interp(across, *rest.lower)
    share_down = np.clip((z.imag - top) / np.maximum(bottom - top, 1e-9), 0.0, 1.0)
    ends = []
    for x in (rest.iris.real - reach, rest.iris.real + reach):
        x = float(np.clip(x, 0.02, 0.98))
        side_top, side_bottom = np.interp(x, *rest.upper), np.interp(x, *rest.lower)
        point = rest.origin + rest.unit * (x + 1j * (side_top + share_down * (side_bottom - side_top)))
        ends.append((x, cv2.remap(photo, _xy(point).astype(np.float32), None, cv2.INTER_LINEAR)))
    (left, left_colour), (right, right_colour) = ends
    t = np.clip((z.real - left) / max(right - left, 1e-9), 0.0, 1.0)[..., None]
    white = (1.0 - t) * left_colour + t * right_colour
    # Not on the opening's own edge, which is the lids' (the white is never stretched from there):
    # the clearance (``_Lids.clearance``) from the lids already found over each column.
    inside = smoothstep(np.minimum(z.imag - top, bottom - z.imag) * abs(rest.unit))
    share = inside * smoothstep((reach - np.abs(z - rest.iris)) / (0.15 * eye.radius))
    window = plate[rows, cols]
    window[:] = np.round(share[..., None] * white + (1.0 - share[..., None]) * window).astype(np.uint8)


def _xy(points: np.ndarray) -> np.ndarray:
    """Image points as complex numbers to ``(..., 2)`` coordinates (x, y): an outline, or with
    ``float32`` a ``cv2.remap`` map."""
    return np.stack([points.real, points.imag], -1)


def _window(points: np.ndarray, shape: tuple[int, ...], pad: int = 2) -> tuple[slice, slice]:
    """The image window (rows, cols) round ``points`` ``(n, 2)`` with ``pad`` pixels to spare (for
    bilinear sampling and antialiased edges), within an image of ``shape``."""
    height, width = shape[:2]
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + pad + 1, [width, height])
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


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
