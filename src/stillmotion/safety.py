"""The safety checker: NudeNet's detector run on the photo before anything is rendered.

Model: NudeNet 3.4.2's ``320n.onnx`` (a YOLOv8n detector of 18 body-part classes at 320×320 input,
about 12 MB), shipped inside the ``nudenet`` wheel and run offline with onnxruntime in a few tens of
milliseconds. It is located in the installed package and run here directly, with exactly the input
NudeNet's own ``NudeDetector.detect(path)`` builds (pad to a square at the bottom and right, scale
to 320, ÷255, channels in BGR order: its wrapper swaps red and blue twice, see ``_blob``) and the
same decoding (each candidate box counts for its highest-scoring class), so the scores are NudeNet's
and the thresholds quoted for NudeNet apply here. Running it directly keeps the wrapper's per-box
Python loop away, and lets one single-threaded session serve the whole process (the workers already
use every core).

The photo is **blocked** when any of these classes is detected with a score ≥ ``DEFAULT_THRESHOLD``
(0.60):

================================  ==========================
class                             shown in the message as
================================  ==========================
``FEMALE_GENITALIA_EXPOSED``      exposed female genitalia
``MALE_GENITALIA_EXPOSED``        exposed male genitalia
``FEMALE_BREAST_EXPOSED``         exposed female breast
``BUTTOCKS_EXPOSED``              exposed buttocks
``ANUS_EXPOSED``                  exposed anus
================================  ==========================

The other classes (faces, covered parts, exposed feet, belly, armpits, male breast) never block.
0.60 is well above the weak, spurious detections an ordinary portrait gets (below 0.1 for these
classes on the bundled astronaut, whose face scores 0.72 as FACE_FEMALE), and below NudeNet's
confident detections. A request sets ``disable_safety_checker`` to skip the check; a blocked photo
fails the request with ``SafetyBlocked``, which the API reports as FAILED, as the hosted API reports
its content blocks.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stillmotion.errors import SafetyBlocked, StillmotionError

if TYPE_CHECKING:  # onnxruntime loads on the first check, not when this module is imported
    import onnxruntime

#: NudeNet 3.4.2's class names, in the order of the model's outputs (``nudenet.nudenet.__labels``).
LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
#: The classes that block a photo by default.
BLOCKING_CLASSES: frozenset[str] = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
#: The score at or above which a detection of a blocking class blocks the photo.
DEFAULT_THRESHOLD = 0.60
#: The model's input side, as NudeNet runs it.
INPUT_SIZE = 320
_MODEL_FILE = "320n.onnx"


def model_path() -> Path:
    """The detector's ONNX file inside the installed ``nudenet`` package (found without importing
    the package, whose wrapper pulls in more than we use)."""
    spec = importlib.util.find_spec("nudenet")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / _MODEL_FILE
        if candidate.is_file():
            return candidate
    raise StillmotionError(
        "the safety checker needs the nudenet package and its bundled model; install it with "
        "scripts/bootstrap.sh (pip install --no-deps nudenet==3.4.2)"
    )


@functools.cache
def _session() -> onnxruntime.InferenceSession:
    """The detector, loaded once per process on first use."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread: the service already runs one render per core, and the model takes ~25 ms anyway.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused providers on stderr
    return onnxruntime.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


#: A photo: its file, or its RGB pixels as the engine's reader (``media.read_image``) decoded them.
Photo = Path | np.ndarray


def _blob(photo: Photo) -> np.ndarray:
    """The photo as the model's 1×3×320×320 float input, as ``NudeDetector.detect`` builds it.

    A file is decoded by the engine's own reader (``media.read_image``): its size limits are
    checked from the header before any pixel is decoded, and EXIF orientation is applied, as NudeNet's
    ``cv2.imread`` does. Transparent pixels are composited on white (NudeNet drops the alpha channel
    and keeps whatever colour lies under it), so the checker judges the picture the engine animates.
    """
    import cv2  # the engine's OpenCV; imported here so importing this module stays cheap

    from stillmotion.engine.media import photo_pixels

    image = cv2.cvtColor(photo_pixels(photo), cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    side = max(height, width)
    square = cv2.copyMakeBorder(image, 0, side - height, 0, side - width, cv2.BORDER_CONSTANT)
    # NudeNet converts RGBA→BGR (a red/blue swap on three channels), then swaps again in
    # blobFromImage: the model is fed BGR, and so it is here, to keep NudeNet's scores.
    return cv2.dnn.blobFromImage(
        square, 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), (0, 0, 0), swapRB=False, crop=False
    )


def detect(photo: Photo) -> dict[str, float]:
    """The best score of each class detected in ``photo`` (classes not seen are absent).

    Each candidate box counts for its highest-scoring class only, as in NudeNet's own decoding;
    overlapping boxes need no suppression here, since only the best score per class matters.
    """
    session = _session()
    (output,) = session.run(None, {session.get_inputs()[0].name: _blob(photo)})
    scores = output[0, 4:, :]  # (classes, boxes); rows 0-3 are the box centre and size
    best_class = scores.argmax(axis=0)
    best_score = scores.max(axis=0)
    return {LABELS[index]: float(best_score[best_class == index].max()) for index in np.unique(best_class)}


def describe(label: str) -> str:
    """A class name in words: ``FEMALE_BREAST_EXPOSED`` → "exposed female breast"."""
    *subject, qualifier = label.lower().split("_")  # the last word qualifies: FACE_FEMALE → "female face"
    return " ".join([qualifier, *subject])


def check_photo(
    photo: Photo, *, threshold: float = DEFAULT_THRESHOLD, classes: Collection[str] = BLOCKING_CLASSES
) -> None:
    """Raise ``SafetyBlocked`` if the photo shows any of ``classes`` with a score ≥ ``threshold``.

    ``classes`` and ``threshold`` default to the documented policy (module docstring); other values
    are for tests and for operators who want a stricter check.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    unknown = set(classes) - set(LABELS)
    if unknown:
        raise ValueError(f"unknown safety classes: {sorted(unknown)}; known: {list(LABELS)}")
    found = {
        label: score for label, score in detect(photo).items() if label in classes and score >= threshold
    }
    if found:
        label = max(found, key=found.__getitem__)
        raise SafetyBlocked(
            f"the safety checker blocked the photo: {describe(label)} detected "
            f"(score {found[label]:.2f} ≥ {threshold:.2f}); set disable_safety_checker to skip the check"
        )
