"""From driving landmarks to the photo's target landmarks: head pose apart from expression, both
transferred *relative* to a neutral reference frame, smoothed without lag (forward and backward in
time), and resampled in time.

Relative transfer follows the "relative" mode of Siarohin et al., "First Order Motion Model for Image
Animation" (NeurIPS 2019) and LivePortrait (Guo et al., 2024): the photo keeps its own identity and
starting expression, and receives only the *change* the driving face makes from its reference frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stillmotion.engine import face_model as fm
from stillmotion.engine.easing import smoothstep

_TWO_PI = 2.0 * math.pi


class OneEuroFilter:
    """Adaptive low-pass filter for noisy signals: steady when still, responsive when moving.

    Casiez, Roussel and Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
    Interactive Systems", CHI 2012. Vectorised: filters an array of any shape element-wise, and
    ``min_cutoff`` may be an array broadcasting against it (a cut-off per element).
    """

    def __init__(
        self, rate: float, min_cutoff: float | np.ndarray = 1.0, beta: float = 0.0, d_cutoff: float = 1.0
    ):
        self._rate = rate
        self._min_cutoff = min_cutoff
        self._beta = beta
        self._d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (_TWO_PI * cutoff)
        return 1.0 / (1.0 + tau * self._rate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._x is None or self._dx is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) * self._rate
        self._dx = self._dx + self._alpha(self._d_cutoff) * (dx - self._dx)
        cutoff = self._min_cutoff + self._beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff) * (x - self._x)
        return self._x.copy()


@dataclass(frozen=True)
class FaceFeatures:
    """Per-frame measures used to pick the reference and reported by the quality benchmark."""

    mouth: float
    eyes: float
    yaw: float
    pitch: float
    roll: float

    @classmethod
    def of(cls, lm: np.ndarray) -> FaceFeatures:
        yaw, pitch, roll = fm.head_angles(lm)
        return cls(fm.mouth_opening(lm), float(np.mean(fm.eye_openness(lm))), yaw, pitch, roll)


def choose_reference(features: Sequence[FaceFeatures | None]) -> int:
    """Index of the most neutral frame: mouth closed, eyes normally open, facing the camera.

    Each term is scaled by its spread over the clip, so no single measure dominates; frames without a
    face never qualify. Averaged over a short window so one lucky frame mid-blink does not win.
    """
    valid = [i for i, f in enumerate(features) if f is not None]
    if not valid:
        raise ValueError("no frame has a face")
    table = np.array([[f.mouth, f.eyes, f.yaw, f.pitch] for f in features if f is not None])
    spread = np.maximum(table.std(0), [0.02, 0.02, math.radians(2), math.radians(2)])
    eyes_typical = np.median(table[:, 1])
    # Open eyes matter more than closed mouths: a closed-eye reference makes every frame look wide-eyed.
    score = (
        table[:, 0] / spread[0]
        + 1.5 * np.abs(table[:, 1] - eyes_typical) / spread[1]
        + np.abs(table[:, 2]) / spread[2]
        + np.abs(table[:, 3]) / spread[3]
    )
    if len(score) >= 5:
        score = np.convolve(score, np.ones(3) / 3, mode="same")
    return valid[int(np.argmin(score))]


class Retargeter:
    """Maps a driving face onto the photo's face, relative to a driving reference frame.

    Head pose is the 3D similarity (Umeyama 1991) of the rigid points from the reference to the
    current frame; expression is what is left once that pose is undone. Both are carried into the
    photo's frame through the similarity that aligns the reference face with the photo's face, so the
    photo's own mesh is rotated in 3D (yaw and pitch foreshorten its relief) and then projected.

    The mouth's *opening* is the exception to relative transfer: a photo that smiles with parted lips
    would otherwise never close them. Where the photo's lips are parted wider than the reference's,
    they are first closed by the difference (the upper lip lowered and the jaw raised, each by half:
    ``_LipsClosing``), so at the reference the photo's mouth is about as open as the driving mouth;
    the lips' shape stays the photo's own. Below the reference's opening, the lips' gap closes in
    proportion to the driving gap (the lips closed or parted by what the motion leaves over), so
    lips that meet in the driving face meet in the photo,
    even a wide smile's whose gap the driving mouth's closing travel would not cover; opening wider
    than the reference is the driving jaw's own travel.
    The lids' motion is scaled by the photo's lid gap over the reference's (``_lid_gain``), so a
    blink closes the photo's eye however wide it is; likewise each lip's deformation, measured from
    its outer contour, by the photo's lip thickness over the reference's (``_lip_band_gain``), so a
    lip thins or fills by the driving lip's share of its thickness.
    """

    #: Soft limits on the head's travel, in the photo's inter-ocular distances, and on its change of
    #: scale: a handheld driving camera's drift must not walk the head out of the photo's composition.
    #: Motion up to ``_KNEE`` of a limit passes unchanged, so a head that moves as people do while
    #: talking (the sample's travels up to 0.8, under the travel's knee at 0.84) is followed exactly.
    MAX_SHIFT = 1.4
    MAX_SCALE_CHANGE = 0.15

    def __init__(self, photo: np.ndarray, reference: np.ndarray):
        self._photo = photo
        self._reference = reference
        self._to_photo = fm.fit_similarity(reference[fm.RIGID], photo[fm.RIGID])
        self._pivot = photo[fm.RIGID].mean(0)
        self._face = fm.interocular(photo)
        closing = _LipsClosing.of(photo)
        self._down = closing.down
        self._closing, self._closing_gap = closing.motion(_UPPER_LIP_SHARE)
        excess = max(fm.mouth_opening(photo) - fm.mouth_opening(reference), 0.0)
        # A mouth open wide closes mostly by its jaw: the upper lip comes down by its share, but by
        # no more than a lip can (``_UPPER_LIP_TRAVEL``).
        rest_closing, _ = closing.motion(min(_UPPER_LIP_SHARE, _UPPER_LIP_TRAVEL / max(excess, 1e-9)))
        self._rest_closure = excess * fm.mouth_width(photo) * rest_closing
        self._reference_gap = fm.lip_gap(reference)
        #: Photo pixels of lip gap per driving pixel, from the reference down to closed lips.
        self._gap_gain = self._gap(photo + self._rest_closure) / max(self._reference_gap, 1e-9)
        self._lid_gain = _lid_gain(photo, reference, self._to_photo.scale)
        self._lip_gain = _lip_band_gain(photo, reference, self._to_photo.scale)

    def target(self, driving: np.ndarray) -> np.ndarray:
        """The photo's landmarks ``(478, 3)`` as they should be for this driving frame."""
        ref = self._reference
        pose = fm.fit_similarity(ref[fm.RIGID], driving[fm.RIGID])
        # Expression: the driving face with its pose undone, less the reference face.
        unposed = pose.inverse().apply(driving)
        expression = unposed - ref
        align = self._to_photo
        expression = _with_lip_bands_scaled(expression * self._lid_gain, self._lip_gain)
        photo_expr = self._photo + self._rest_closure + align.scale * expression @ align.rotation.T
        driving_gap = fm.lip_gap(unposed)
        if driving_gap < self._reference_gap:
            # Closing lips close in proportion: the lips make up what the motion leaves open (or
            # take back what it closes too far).
            too_open = self._gap(photo_expr) - self._gap_gain * driving_gap
            photo_expr += too_open / self._closing_gap * self._closing
        # Pose change expressed in the photo's frame: conjugate the rotation by the alignment.
        rotation = align.rotation @ pose.rotation @ align.rotation.T
        shift = driving[fm.RIGID].mean(0) - ref[fm.RIGID].mean(0)
        shift = align.scale * shift @ align.rotation.T
        shift[2] = 0.0  # moving toward the camera is already the scale change
        shift = _soft_limit(shift, self.MAX_SHIFT * self._face)
        scale = float(np.exp(_soft_limit(np.log(pose.scale), np.log1p(self.MAX_SCALE_CHANGE))))
        return scale * (photo_expr - self._pivot) @ rotation.T + self._pivot + shift

    def _gap(self, face: np.ndarray) -> float:
        """The inner lips' gap at the middle, down the photo's face (negative if they cross)."""
        return float((face[fm.LOWER_INNER_LIP_MID, :2] - face[fm.UPPER_INNER_LIP_MID, :2]) @ self._down)


#: Bounds on how much more (or less) a photo's lids move than the driving lids, relative to the
#: face: from an eye half as open as the driving one to one three times as open (a cartoon's).
_LID_GAIN_RANGE = (0.5, 3.0)


def _lid_gain(photo: np.ndarray, reference: np.ndarray, scale: float) -> np.ndarray:
    """Per-landmark factors ``(478, 1)`` on the expression's motion: each eye's lids move by the
    driving lids' motion times the ratio of the photo's lid gap to the reference's (the gaps
    compared at the same face size, ``scale`` being the reference-to-photo similarity's), so a
    blink closes any eye, large or small, and widening opens it by the same share; 1 elsewhere.
    """
    gain = np.ones((len(photo), 1))
    gaps = zip(fm.eye_gaps(photo), fm.eye_gaps(reference), strict=True)
    for contour, (photo_gap, reference_gap) in zip((fm.RIGHT_EYE, fm.LEFT_EYE), gaps, strict=True):
        gain[contour] = np.clip(photo_gap / max(scale * reference_gap, 1e-9), *_LID_GAIN_RANGE)
    return gain


#: Bounds on how much thicker (or thinner) a photo's lip is than the driving one, column by column.
_LIP_GAIN_RANGE = (0.5, 2.0)


def _lip_band_gain(photo: np.ndarray, reference: np.ndarray, scale: float) -> np.ndarray:
    """Per lip column ``(2, 9)`` (upper lip, lower lip; ``face_model``'s lip rings' columns): the
    photo's lip thickness there over the reference's, compared at the same face size."""

    def thickness(face: np.ndarray) -> np.ndarray:
        rings = np.stack([fm.UPPER_LIP_RINGS, fm.LOWER_LIP_RINGS])
        return np.linalg.norm(face[rings[:, 0], :2] - face[rings[:, -1], :2], axis=-1)

    return np.clip(thickness(photo) / np.maximum(scale * thickness(reference), 1e-9), *_LIP_GAIN_RANGE)


def _with_lip_bands_scaled(expression: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``expression`` with each lip's deformation, measured from its outer contour, scaled column by
    column by ``gain`` (``_lip_band_gain``): the outer contour moves as the driving one does, and a
    lip thins or thickens by the driving lip's *share*, not its pixels — a thin lip driven by a full
    one would otherwise be squeezed to nothing as the mouth opens, and a full one barely change."""
    scaled = expression.copy()
    for rings, columns in zip((fm.UPPER_LIP_RINGS, fm.LOWER_LIP_RINGS), gain, strict=True):
        outer = expression[rings[-1]]
        scaled[rings[:-1]] = outer + columns[:, None] * (expression[rings[:-1]] - outer)
    return scaled


#: Share of a parted mouth's closing that is the upper lip's coming down; the rest is the jaw's
#: rising (``_LipsClosing``).
_UPPER_LIP_SHARE = 0.5
#: The furthest (mouth widths) an upper lip comes down to close a mouth: about its own height, so
#: a mouth open wider than a smile's parting closes by its jaw beyond that.
_UPPER_LIP_TRAVEL = 0.1


@dataclass(frozen=True)
class _LipsClosing:
    """How the photo's parted lips close: per-landmark weights ``(478,)`` of the jaw's rise (1 at
    the lower lip) and of the upper lip's descent (1 at its middle), along the face's down direction
    ``down`` (unit, 2D); ``motion`` blends them.

    Lips that close from a smile's parting meet between where they were: the upper lip, raised
    off the teeth, comes down as the jaw comes up. Raised by the jaw alone, the sample's lower face
    came out shorter than any face FaceMesh knows, and it read the whole face 0.013 inter-ocular
    distances higher at the nose than meant.

    The jaw's weights rise from the mouth corners' line to 1 at the lower lip and below, and fade out
    sideways beyond the mouth's width, so the lower face moves as a jaw does and the cheeks stay
    put. A smile lifts the corners above the upper lip's middle, which then rides up a little with
    the jaw: the gap closes by less than the lower lip rises. The upper lip's weights rise from 0 at
    the base of the nose to 1 at the inner upper lip, each column by its own share of the middle's
    gap, so the corners, where the lips already meet, stay where they are.
    """

    jaw: np.ndarray
    upper_lip: np.ndarray
    down: np.ndarray

    @classmethod
    def of(cls, photo: np.ndarray) -> _LipsClosing:
        down = photo[fm.CHIN, :2] - photo[fm.FOREHEAD, :2]
        down /= max(float(np.linalg.norm(down)), 1e-9)
        width = fm.mouth_width(photo)
        if width <= 0:
            return cls(np.zeros(len(photo)), np.zeros(len(photo)), down)
        across = np.array([-down[1], down[0]])
        centre = (photo[fm.MOUTH_LEFT, :2] + photo[fm.MOUTH_RIGHT, :2]) / 2
        rel = photo[:, :2] - centre
        height, along = rel @ down, rel @ across
        lower_lip = max(float(height[fm.LOWER_INNER_LIP_MID]), 1.0)
        half = width / 2
        sideways = np.clip((2.2 * half - np.abs(along)) / (1.2 * half), 0.0, 1.0)
        jaw = np.clip(height / lower_lip, 0.0, 1.0) * sideways

        def lip_line(lip: np.ndarray) -> np.ndarray:
            order = np.argsort(along[lip])
            return np.interp(along, along[lip][order], height[lip][order])

        upper, lower = lip_line(fm.UPPER_INNER_LIP), lip_line(fm.LOWER_INNER_LIP)
        middle = max(float(height[fm.LOWER_INNER_LIP_MID] - height[fm.UPPER_INNER_LIP_MID]), 1e-6)
        column = np.clip((lower - upper) / middle, 0.0, 1.0)
        nose = float(height[fm.NOSE_BASE])
        above = np.clip((height - nose) / np.maximum(upper - nose, 1.0), 0.0, 1.0)
        upper_lip = np.where(height <= upper + 1e-6, above * column, 0.0)
        return cls(jaw, upper_lip, down)

    def motion(self, upper_share: float) -> tuple[np.ndarray, float]:
        """Per-landmark motion ``(478, 3)`` that closes the lips, the jaw rising by ``1 - upper_share``
        pixels at the lower lip and the upper lip coming down by ``upper_share`` at its middle, and
        by how much that closes the lips' gap (pixels)."""
        weight = (1.0 - upper_share) * self.jaw - upper_share * self.upper_lip
        motion = np.zeros((len(weight), 3))
        motion[:, :2] = -weight[:, None] * self.down
        closes = float(weight[fm.LOWER_INNER_LIP_MID] - weight[fm.UPPER_INNER_LIP_MID])
        return motion, max(closes, 0.05)


#: Share of a soft limit below which values pass unchanged.
_KNEE = 0.6


def _soft_limit(value: np.ndarray | float, limit: float, knee: float = _KNEE) -> np.ndarray:
    """``value`` unchanged up to ``knee`` of ``limit`` in magnitude; beyond, its magnitude eased toward
    ``limit`` (tanh), with no kink at the knee."""
    value = np.asarray(value, dtype=np.float64)
    size = float(np.linalg.norm(value))
    start = knee * limit
    if size <= start:
        return value
    room = limit - start
    return value * ((start + room * np.tanh((size - start) / room)) / size)


class LostFaceBridge:
    """Fills frames where tracking lost the face: the last motion holds, then eases back to rest.

    ``hold`` and ``ease`` are in frames. Landmarks come back through the caller's smoothing filter, so
    the return when the face reappears is eased as well.
    """

    def __init__(self, rest: np.ndarray, hold: int, ease: int):
        self._rest = rest
        self._hold = hold
        self._ease = max(ease, 1)
        self._last: np.ndarray = rest
        self._missing = 0

    def __call__(self, landmarks: np.ndarray | None) -> np.ndarray:
        if landmarks is not None:
            self._last, self._missing = landmarks, 0
            return landmarks
        self._missing += 1
        t = smoothstep((self._missing - self._hold) / self._ease)
        return (1 - t) * self._last + t * self._rest


class LandmarkStore(Protocol):
    """Per-frame landmarks, appended in order and read or rewritten by index (``LandmarkLog``; a
    list will do in tests)."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> np.ndarray | None: ...
    def __setitem__(self, index: int, landmarks: np.ndarray) -> None: ...
    def append(self, landmarks: np.ndarray) -> None: ...


def smooth_zero_phase(
    landmarks: LandmarkStore, smoothed: LandmarkStore, make_filter: Callable[[], OneEuroFilter]
) -> None:
    """Append to the empty ``smoothed`` every frame of ``landmarks`` filtered without lag: the mean
    of one filter run forward in time and another run backward (forward–backward filtering, as
    ``filtfilt`` does for linear filters: Oppenheim and Schafer, "Discrete-Time Signal Processing",
    3rd ed., 2010).

    A causal filter delays every deliberate motion by about ``1 / (2π cutoff)`` (a head turn lands a
    tenth of a second late at 1.5 Hz); the backward run leads by as much, so their mean keeps the
    timing and still removes the jitter. For a first-order low-pass the mean's frequency response is
    exactly the squared magnitude of the causal one. ``landmarks`` must have a face on every frame
    (bridge the gaps first).
    """
    if len(smoothed):
        raise ValueError("smooth_zero_phase appends to an empty store")
    forward, backward = make_filter(), make_filter()
    for index in range(len(landmarks)):
        smoothed.append(forward(_present(landmarks[index])))
    for index in range(len(landmarks) - 1, -1, -1):
        ahead = backward(_present(landmarks[index]))
        smoothed[index] = (_present(smoothed[index]) + ahead) / 2.0


def _present(landmarks: np.ndarray | None) -> np.ndarray:
    if landmarks is None:
        raise ValueError("smooth_zero_phase needs a face on every frame: bridge the gaps first")
    return landmarks


def resample_positions(n_in: int, fps_in: float, fps_out: float | None) -> tuple[int, np.ndarray]:
    """Output frame count and, for each output frame, its position on the driving timeline in frames.

    ``fps_out=None`` keeps the driving frames one for one. Otherwise the output spans the same duration
    (to within one frame) and positions are fractional: motion is interpolated between the two nearest
    driving frames, never made by repeating frames.
    """
    if fps_out is None:
        return n_in, np.arange(n_in, dtype=np.float64)
    n_out = max(1, round(n_in * fps_out / fps_in))
    positions = np.arange(n_out, dtype=np.float64) * (fps_in / fps_out)
    return n_out, np.minimum(positions, n_in - 1)
