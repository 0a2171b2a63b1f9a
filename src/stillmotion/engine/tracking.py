"""Face landmarks from MediaPipe FaceMesh, the legacy solution shipped inside the mediapipe wheel
(no download): 468 mesh points plus 10 iris points (``refine_landmarks=True``).

The photo is analysed once in static mode, keeping the largest face; the driving video is tracked in
video mode, which re-uses the last face's region, so one face is followed from frame to frame.
"""

from __future__ import annotations

import os
from types import TracebackType

import numpy as np

from stillmotion.engine.face_model import N_LANDMARKS, interocular
from stillmotion.engine.native_stderr import quiet_native_stderr
from stillmotion.errors import NoFaceError

# MediaPipe's native code logs through glog/absl; keep the CLI's stderr for progress and errors.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _to_pixels(landmarks: object, width: int, height: int) -> np.ndarray:
    pts = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)  # type: ignore[attr-defined]
    # MediaPipe normalises x by width, y by height and z "roughly like x": bring all three to pixels.
    pts *= np.array([width, height, width])
    return pts


def _solutions():
    with quiet_native_stderr():
        import mediapipe as mp
    return mp.solutions.face_mesh


def detect_photo_face(rgb: np.ndarray) -> np.ndarray:
    """Landmarks ``(478, 3)`` of the largest face in a photo; ``NoFaceError`` when there is none."""
    face_mesh = _solutions()
    height, width = rgb.shape[:2]
    with (
        quiet_native_stderr(),
        face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=5, refine_landmarks=True, min_detection_confidence=0.5
        ) as model,
    ):
        result = model.process(np.ascontiguousarray(rgb))
    faces = [_to_pixels(f, width, height) for f in (result.multi_face_landmarks or [])]
    faces = [f for f in faces if len(f) == N_LANDMARKS]
    if not faces:
        raise NoFaceError("no face found in the image: use a front-facing, well-lit portrait")
    return max(faces, key=interocular)


class FaceTracker:
    """Follows one face through consecutive frames (FaceMesh video mode)."""

    def __init__(self) -> None:
        face_mesh = _solutions()
        with quiet_native_stderr():
            self._model = face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
        self._started = False

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks ``(478, 3)`` in this frame's pixels, or ``None`` where the face is lost."""
        height, width = rgb.shape[:2]
        if self._started:
            result = self._model.process(rgb)
        else:  # the graph logs its start-up warnings on the first frame
            with quiet_native_stderr():
                result = self._model.process(rgb)
            self._started = True
        if not result.multi_face_landmarks:
            return None
        return _to_pixels(result.multi_face_landmarks[0], width, height)

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
