"""Where the person is in the photo: MediaPipe Selfie Segmentation (the legacy solution shipped in
the mediapipe wheel; Bazarevsky et al., "MediaPipe Selfie Segmentation", 2021), run once per photo."""

from __future__ import annotations

import numpy as np

from stillmotion.engine.mediapipe_loader import mediapipe
from stillmotion.engine.native_stderr import quiet_native_stderr


def person_mask(rgb: np.ndarray) -> np.ndarray:
    """Probability ``(h, w)`` in [0, 1] that each pixel belongs to a person."""
    segmentation = mediapipe().solutions.selfie_segmentation
    # model 0 is the general (square, 256x256) model: portraits are rarely wide landscapes.
    with quiet_native_stderr(), segmentation.SelfieSegmentation(model_selection=0) as model:
        result = model.process(np.ascontiguousarray(rgb))
    if result.segmentation_mask is None:
        return np.zeros(rgb.shape[:2], np.float32)
    return np.clip(result.segmentation_mask.astype(np.float32), 0.0, 1.0)
