"""Face landmarks from MediaPipe FaceMesh, the legacy solution shipped inside the mediapipe wheel
(no download): 468 mesh points plus 10 iris points (``refine_landmarks=True``).

The photo is analysed once in static mode, keeping the largest face; the driving video is tracked in
video mode, which re-uses the last face's region, so one face is followed from frame to frame.
"""

from __future__ import annotations

from types import TracebackType

import numpy as np

from stillmotion.engine.face_model import N_LANDMARKS, interocular
from stillmotion.engine.mediapipe_loader import mediapipe
from stillmotion.engine.native_stderr import quiet_native_stderr
from stillmotion.errors import NoFaceError


def _to_pixels(landmarks: object, width: int, height: int) -> np.ndarray:
    pts = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)  # type: ignore[attr-defined]
    # MediaPipe normalises x by width, y by height and z "roughly like x": bring all three to pixels.
    pts *= np.array([width, height, width])
    return pts


def _solutions():
    return mediapipe().solutions.face_mesh


def _nearest(faces: list[np.ndarray], last: np.ndarray) -> np.ndarray:
    """The face whose centre is nearest ``last``'s, in units of ``last``'s inter-ocular distance."""
    centre, size = last[:, :2].mean(0), max(interocular(last), 1.0)
    return min(faces, key=lambda face: float(np.linalg.norm(face[:, :2].mean(0) - centre)) / size)


def detect_photo_face(rgb: np.ndarray) -> np.ndarray:
    """Landmarks ``(478, 3)`` of the largest face in a photo; ``NoFaceError`` when there is none.

    FaceMesh's own detector is MediaPipe's short-range model, made for faces that fill much of the
    frame: it misses the small faces of a group photo or a wide shot. Then MediaPipe's full-range
    detector (BlazeFace, Bazarevsky et al. 2019, sparse full-range model shipped in the wheel) finds
    the faces, and FaceMesh runs on a crop around each.
    """
    faces = _mesh_faces(rgb)
    if not faces:
        for x0, y0, crop in _face_crops(rgb):
            faces += [face + np.array([x0, y0, 0.0]) for face in _mesh_faces(crop)]
    if not faces:
        raise NoFaceError("no face found in the image: use a front-facing, well-lit portrait")
    return max(faces, key=interocular)


def count_faces(rgb: np.ndarray) -> int:
    """How many faces FaceMesh finds in one frame (static mode, up to five)."""
    return len(_mesh_faces(rgb))


def _mesh_faces(rgb: np.ndarray) -> list[np.ndarray]:
    """Every face FaceMesh finds in ``rgb`` (static mode), as landmarks in its pixels."""
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
    return [f for f in faces if len(f) == N_LANDMARKS]


def _face_crops(rgb: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Square crops ``(x0, y0, pixels)`` around each face the full-range detector finds, wide enough
    (twice the face box) for FaceMesh's own detector to take them as close-ups."""
    detection = mediapipe().solutions.face_detection
    with quiet_native_stderr():
        detector = detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        with detector as model:
            result = model.process(np.ascontiguousarray(rgb))
    height, width = rgb.shape[:2]
    crops = []
    for detection in result.detections or []:
        box = detection.location_data.relative_bounding_box
        side = 2.0 * max(box.width * width, box.height * height)
        cx, cy = (box.xmin + box.width / 2) * width, (box.ymin + box.height / 2) * height
        x0, y0 = max(int(cx - side / 2), 0), max(int(cy - side / 2), 0)
        x1, y1 = min(int(cx + side / 2), width), min(int(cy + side / 2), height)
        if x1 - x0 > 16 and y1 - y0 > 16:
            crops.append((x0, y0, rgb[y0:y1, x0:x1]))
    return crops


class FaceTracker:
    """Follows one face through consecutive frames (FaceMesh video mode).

    With ``several`` people in the shot FaceMesh tracks up to ``MAX_FACES`` faces; the one followed
    is the largest at the start and, from then on, the one nearest (in its own face sizes) to where
    the followed face was last seen — also after it was lost for a while — so a second person never
    takes over. With one person it tracks one face: FaceMesh runs its face detector on every frame
    while it tracks fewer faces than it may, which costs 30% more per frame.
    """

    MAX_FACES = 3

    def __init__(self, follow: np.ndarray | None = None, *, several: bool = False) -> None:
        """``follow``: landmarks of the face to keep following (from an earlier part of the video)."""
        face_mesh = _solutions()
        with quiet_native_stderr():
            self._model = face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=self.MAX_FACES if several else 1,
                refine_landmarks=True,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
        self._started = False
        self._last: np.ndarray | None = follow

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks ``(478, 3)`` in this frame's pixels, or ``None`` where the face is lost."""
        height, width = rgb.shape[:2]
        if self._started:
            result = self._model.process(rgb)
        else:  # the graph logs its start-up warnings on the first frame
            with quiet_native_stderr():
                result = self._model.process(rgb)
            self._started = True
        faces = [_to_pixels(f, width, height) for f in (result.multi_face_landmarks or [])]
        faces = [f for f in faces if len(f) == N_LANDMARKS]
        if not faces:
            return None
        chosen = _nearest(faces, self._last) if self._last is not None else max(faces, key=interocular)
        self._last = chosen
        return chosen

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
