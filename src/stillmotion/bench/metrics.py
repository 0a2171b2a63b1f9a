"""Pure metric functions of the quality benchmark (``stillmotion bench --quality``).

Each takes arrays and returns numbers; none reads files or runs the engine, so each can be checked on
synthetic data whose answer is known (``tests/test_quality_bench.py``). Face measures are the engine's
own (``stillmotion.engine.face_model``), so the benchmark judges the motion in the units the engine
steers by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from stillmotion.engine import face_model as fm

#: The per-frame face measures compared between the driving video and the output, in this order.
SERIES = ("mouth", "eye_right", "eye_left", "gaze_h", "gaze_v", "roll", "yaw", "pitch")

#: Smallest signal-to-noise ratio (a series' standard deviation over its tracking noise) at which a
#: correlation is judged. Against a driving series of SNR s even a perfect output reaches only
#: r = s / sqrt(1 + s²) (0.89 at s = 2), so below that r measures FaceMesh's noise, not the engine.
MIN_SNR = 2.0

#: ITU-R BT.601 luma weights for R, G, B: the luma SSIM is conventionally computed on (Wang et al.
#: 2004 evaluate on greyscale; MATLAB's ``rgb2gray`` uses the same weights).
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])

# SSIM constants and window of Wang et al. 2004, section III-C: K1 = 0.01, K2 = 0.03, an 11x11
# circular-symmetric Gaussian window of standard deviation 1.5.
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5


def luma(rgb: np.ndarray) -> np.ndarray:
    """Luma ``(h, w)`` float64 on 0–255 of an RGB ``uint8`` image (ITU-R BT.601 weights)."""
    return rgb.astype(np.float64) @ _LUMA_WEIGHTS


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(peak² / MSE)``, over every pixel and channel.

    ``inf`` for identical images.
    """
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity of two greyscale images (Wang, Bovik, Sheikh and Simoncelli, "Image
    Quality Assessment: From Error Visibility to Structural Similarity", IEEE TIP 13(4), 2004).

    Local means, variances and covariance are Gaussian-weighted (11x11 window, σ = 1.5) and the SSIM map
    is averaged over the pixels whose window lies wholly inside the image, as Wang's reference
    implementation does (``filter2(..., 'valid')``), so no border convention leaks into the score.
    1 for identical images, lower as they differ.
    """
    x, y = a.astype(np.float64), b.astype(np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError("ssim takes two greyscale images of equal size")
    if min(x.shape) < _SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels")
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2

    def local_mean(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (_SSIM_WINDOW, _SSIM_WINDOW), _SSIM_SIGMA)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    r = _SSIM_WINDOW // 2
    return float(ssim_map[r:-r, r:-r].mean())


def face_box(landmarks: np.ndarray, shape: tuple[int, ...], pad: float = 0.1) -> tuple[slice, slice]:
    """(rows, columns) slices of the landmarks' bounding box, grown by ``pad`` of its size on every
    side and clipped to an image of ``shape``."""
    height, width = shape[:2]
    (x0, y0), (x1, y1) = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    dx, dy = pad * (x1 - x0), pad * (y1 - y0)
    left, right = max(0, math.floor(x0 - dx)), min(width, math.ceil(x1 + dx) + 1)
    top, bottom = max(0, math.floor(y0 - dy)), min(height, math.ceil(y1 + dy) + 1)
    return slice(top, bottom), slice(left, right)


def landmark_error(detected: np.ndarray, reference: np.ndarray) -> float:
    """Mean 2D distance between corresponding landmarks over the reference face's inter-ocular
    distance (``face_model.interocular``): the normalised mean error of face-alignment benchmarks
    (e.g. 300-W), which makes the number independent of the face's size in pixels."""
    distances = np.linalg.norm(detected[:, :2] - reference[:, :2], axis=1)
    return float(distances.mean() / fm.interocular(reference))


def carry_offset(offset: np.ndarray, rest: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """``offset`` ``(n, 2)``, measured on a face at ``rest``, turned and scaled as the face moved to
    ``moved`` (the 2D similarity of the rigid points between them): a detector's constant offset on
    a face travels with the face."""
    pose = fm.fit_similarity(rest[fm.RIGID, :2], moved[fm.RIGID, :2])
    return pose.scale * offset @ pose.rotation.T


def face_measures(landmarks: np.ndarray) -> dict[str, float]:
    """The engine's face measures of one frame, keyed as ``SERIES``: mouth opening, each eye's
    openness, gaze (iris within the eye) and head angles in degrees."""
    yaw, pitch, roll = fm.head_angles(landmarks)
    eye_right, eye_left = fm.eye_openness(landmarks)
    gaze_h, gaze_v = fm.gaze(landmarks)
    return {
        "mouth": fm.mouth_opening(landmarks),
        "eye_right": eye_right,
        "eye_left": eye_left,
        "gaze_h": gaze_h,
        "gaze_v": gaze_v,
        "roll": math.degrees(roll),
        "yaw": math.degrees(yaw),
        "pitch": math.degrees(pitch),
    }


#: Below this share of its usual (median) openness an eye counts as closing: gaze is not measured.
GAZE_MIN_OPENNESS = 0.5


def measure_series(landmarks: Sequence[np.ndarray | None]) -> dict[str, np.ndarray]:
    """Each ``SERIES`` measure over time; NaN where the face was not found, and gaze NaN where either
    eye is less than ``GAZE_MIN_OPENNESS`` as open as usual: under a closing lid there is no iris to
    place, and FaceMesh's guess at one swings with the blink (on a blinking clip those guesses are
    the largest "gaze" moves, which would make gaze r measure blinks)."""
    rows = [face_measures(lm) if lm is not None else None for lm in landmarks]
    series = {name: np.array([row[name] if row else np.nan for row in rows]) for name in SERIES}
    closing = np.zeros(len(rows), bool)
    for eye in ("eye_right", "eye_left"):
        openness = series[eye]
        if np.isfinite(openness).any():
            closing |= openness < GAZE_MIN_OPENNESS * np.nanmedian(openness)
    for name in ("gaze_h", "gaze_v"):
        series[name][closing] = np.nan
    return series


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's product-moment correlation coefficient (Pearson, "Mathematical contributions to the
    theory of evolution. III. Regression, heredity, and panmixia", Phil. Trans. R. Soc. A 187, 1896):
    ``cov(x, y) / (σx σy)``. ``None`` when either series is constant, where r is undefined."""
    dx, dy = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return None if norm == 0.0 else float(dx @ dy) / norm


def noise_level(series: np.ndarray) -> float:
    """Standard deviation of the white noise on a slowly varying series, from its second differences
    (the "pseudo-residuals" of Gasser, Sroka and Jennen-Steinmetz, "Residual variance and residual
    pattern in nonlinear regression", Biometrika 73(3), 1986): ``x[t-1] - 2 x[t] + x[t+1]`` cancels a
    locally linear signal and has six times the noise's variance. Their spread is taken as the median
    absolute deviation × 1.4826 (Hampel 1974), so a few fast events — a blink, a word — do not count
    as noise. NaNs (frames without a face) are skipped; NaN if fewer than three frames remain."""
    pseudo = np.diff(series, 2)
    pseudo = pseudo[np.isfinite(pseudo)]
    if not len(pseudo):
        return math.nan
    mad = float(np.median(np.abs(pseudo - np.median(pseudo))))
    return 1.4826 * mad / math.sqrt(6.0)


def correlation(driving: np.ndarray, output: np.ndarray) -> dict[str, object]:
    """How well ``output`` follows ``driving`` over time: Pearson r over the frames where both have a
    value, both standard deviations, the driving series' signal-to-noise ratio (``noise_level``) and
    the r that ratio allows a perfect output (``r_ceiling``). r is ``None``, with a ``reason``, where
    it would be meaningless: a driving series within ``MIN_SNR`` of its own noise (nothing to follow)
    or a constant output."""
    both = np.isfinite(driving) & np.isfinite(output)
    d, o = driving[both], output[both]
    noise = noise_level(driving)
    snr = float(d.std()) / noise if len(d) and noise > 0 else math.inf
    report: dict[str, object] = {
        "r": None,
        "std_driving": float(d.std()) if len(d) else None,
        "std_output": float(o.std()) if len(o) else None,
        "snr_driving": snr if math.isfinite(snr) else None,
        "r_ceiling": snr / math.sqrt(1 + snr**2) if math.isfinite(snr) else 1.0,
        "frames": int(both.sum()),
    }
    if len(d) < 3:
        report["reason"] = "fewer than 3 frames with a face on both sides"
    elif snr < MIN_SNR:
        report["reason"] = (
            f"driving series is flat: its spread is {snr:.1f}x its tracking noise "
            f"(< {MIN_SNR:g}), so r would measure noise"
        )
    else:
        report["r"] = pearson(d, o)
        if report["r"] is None:
            report["reason"] = "output series is constant"
    return report


def jitter(landmarks: Sequence[np.ndarray | None], points: np.ndarray = fm.RIGID) -> float | None:
    """High-frequency energy of landmark trajectories: the mean squared norm of the second temporal
    difference (a discrete acceleration, ``p[t-1] - 2 p[t] + p[t+1]``) of ``points``, in face units
    (the median inter-ocular distance over the sequence).

    A second difference passes motion's slow changes of velocity weakly and white tracking noise
    strongly (its variance is six times the noise's), so it ranks jitter rather than motion; steady
    motion at constant velocity scores 0. Only triples of consecutive frames that all have a face
    count. ``None`` when there is no such triple.
    """
    present = [lm for lm in landmarks if lm is not None]
    if not present:
        return None
    unit = float(np.median([fm.interocular(lm) for lm in present]))
    squared = [
        np.sum(((a[points, :2] - 2 * b[points, :2] + c[points, :2]) / unit) ** 2, axis=1).mean()
        for a, b, c in zip(landmarks, landmarks[1:], landmarks[2:], strict=False)
        if a is not None and b is not None and c is not None
    ]
    return float(np.mean(squared)) if squared else None


def background_mask(person: np.ndarray, grow: float = 1 / 20, threshold: float = 0.5) -> np.ndarray:
    """Boolean ``(h, w)``: where the background is, far enough from the person that the silhouette's
    own (intended) motion is not counted. The person mask (probability > ``threshold``) is dilated by
    ``grow`` of the image's longer side."""
    radius = max(1, round(grow * max(person.shape[:2])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate((person > threshold).astype(np.uint8), kernel)
    return grown == 0


def background_change(frame_luma: np.ndarray, first_luma: np.ndarray, background: np.ndarray) -> float:
    """Mean absolute luma change (grey levels, 0–255) over the ``background`` pixels between a frame
    and the first frame: a still background scores only the encoder's noise."""
    if not background.any():
        return 0.0
    return float(np.abs(frame_luma[background] - first_luma[background]).mean())


def signed_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle (the 2D cross product of two edges): its sign is the
    triangle's winding, its magnitude the area a fold covers."""
    a, b, c = vertices[triangles[:, 0]], vertices[triangles[:, 1]], vertices[triangles[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def flipped_triangles(source: np.ndarray, target: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Boolean per triangle: its winding reverses from ``source`` to ``target`` (the warp folds
    there). The orientation test of ``MeshWarp.flipped``, which returns only the count; the benchmark
    needs to know *which* triangles fold, to tell the face's from the rest and to weigh them by area."""
    return signed_areas(source, triangles) * signed_areas(target, triangles) < 0


def folded_area(target: np.ndarray, triangles: np.ndarray, flipped: np.ndarray) -> float:
    """Pixels covered by the folded triangles at ``target``: a sliver that flips folds a fraction of a
    pixel and cannot be seen, a cheek that folds over itself covers hundreds."""
    return float(np.abs(signed_areas(target, triangles[flipped])).sum() / 2)


def side_by_side(driving: np.ndarray, output: np.ndarray) -> np.ndarray:
    """The driving frame (scaled to the output's height, aspect kept) left of the output frame."""
    height = output.shape[0]
    width = round(driving.shape[1] * height / driving.shape[0])
    scaled = cv2.resize(driving, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.hstack([scaled, output])
