"""``animate``: a photo and a driving video in, an MP4 out.

Two streaming passes, so memory stays flat whatever the driving video's length; it is decoded once:

1. **Track** every driving frame (FaceMesh) into an on-disk landmark log, its mouth (the pixels the
   inner mouth is drawn from, and its skin colour) into an on-disk mouth log, and its features;
   then choose the most neutral frame as the motion reference, bridge the frames where the face was
   lost, and smooth the whole log forward and backward in time into a second log (no lag).
2. **Render** each output frame from the logs: the smoothed driving landmarks at that instant
   (interpolated for another frame rate) are retargeted onto the photo's landmarks, the photo is
   warped through the mesh, its eyes are repainted, the inner mouth is added, and the frame is
   encoded — with the driving audio muxed in by the writer.

Everything about the photo (its fit to the output size, landmarks, mesh, warp tables, skin colour,
its eyes' lids) is computed once before the render loop.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from stillmotion.engine import face_model as fm
from stillmotion.engine import media
from stillmotion.engine.allocator import keep_freed_memory
from stillmotion.engine.compositing import PersonLayer
from stillmotion.engine.eyes import EyeInterior, EyePaint
from stillmotion.engine.framing import crop_window, fit_photo, output_size
from stillmotion.engine.landmark_log import LandmarkLog
from stillmotion.engine.motion import (
    FaceFeatures,
    LostFaceBridge,
    OneEuroFilter,
    Retargeter,
    choose_reference,
    resample_positions,
    smooth_zero_phase,
)
from stillmotion.engine.mouth import DrivingMouth, MouthInterior, MouthPaint
from stillmotion.engine.mouth_log import MouthLog
from stillmotion.engine.options import RenderOptions, RenderReport
from stillmotion.engine.segmentation import person_mask
from stillmotion.engine.tracking import FaceTracker, count_faces, detect_photo_face
from stillmotion.engine.warp import HeadRig, MeshWarp
from stillmotion.errors import MediaError, NoFaceError

ProgressCallback = Callable[[int, int], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class FrameTrace:
    """What the engine meant to draw in one output frame, for measuring it (``bench --quality``)."""

    index: int
    target: np.ndarray
    """The photo's landmarks as the engine moved them, ``(478, 3)`` in output pixels."""
    driving: np.ndarray
    """The (smoothed, interpolated) driving landmarks they came from, in driving-frame pixels."""
    vertices: np.ndarray
    """Every mesh vertex's target position."""
    photo_landmarks: np.ndarray
    mesh: MeshWarp


FrameObserver = Callable[[FrameTrace], None]


@dataclass(frozen=True)
class Quality:
    """Settings that trade speed for quality; ``turbo`` picks the faster column."""

    grid_step: int
    """Coarse warp grid spacing, in output pixels per 720 px of short side."""
    preset: str
    """x264 preset."""
    crf: int
    track_every: int
    """Track every n-th driving frame; the frames between are interpolated."""
    layered: bool
    """Composite the warped person over a still background plate, with the body swaying; without
    it only the head region moves and the background right beside it may stretch a little."""

    @classmethod
    def for_options(cls, options: RenderOptions) -> Quality:
        if options.turbo:
            return cls(grid_step=8, preset="ultrafast", crf=21, track_every=2, layered=False)
        return cls(grid_step=4, preset="superfast", crf=18, track_every=1, layered=True)


def _timed(function: Callable[..., _T], *args: object) -> tuple[_T, float]:
    """``function(*args)`` and the seconds it took (for stages run on another thread)."""
    start = time.perf_counter()
    return function(*args), time.perf_counter() - start


class _Stages:
    """Seconds spent per named stage, summed over every thread that works on it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed


#: One Euro minimum cut-offs (Hz) of the driving landmarks: skull points, and expressive points
#: (irises, lips). Run forward and backward, each acts as its square: 8 Hz keeps lip closures and
#: gaze shifts of a few frames (at 12 Hz the irises' noise shows and a triangle folds).
_POSE_CUTOFF_HZ, _EXPRESSION_CUTOFF_HZ = 1.5, 8.0
#: Lids are not filtered at all (an infinite cut-off passes every frame as it is): a blink lasts 2
#: to 5 frames, and any cut-off low enough to matter halves its depth. The eyes' corners, which do
#: not blink, are filtered as the irises are: the gaze is the iris's place between them, and raw
#: corners would add their tracking noise to it.
_LID_CUTOFF_HZ = np.inf
#: One Euro's speed coefficient: the cut-off rises by this many hertz per face unit per second.
_SPEED_COEFFICIENT = 8.0
#: Clips shorter than this are tracked on one thread: two trackers' start-up would outweigh the gain.
_PARALLEL_TRACKING_SECONDS = 3.0
#: Frames a fresh tracker reads before the frames it logs. FaceMesh's first reading is a detection
#: (its region from the face detector); tracking then refines the region frame by frame. Started
#: cold at the middle of the sample, the second half's tracker read its first frame 0.041
#: inter-ocular distances away from one that had tracked since the start, then 0.020, 0.015, 0.008,
#: 0.004, 0.002, 0.0017 and 0.0006 on the frames after: a twitch of the whole face at the seam.
_TRACKER_WARM_UP_FRAMES = 10
#: Frames rendered on worker threads at once: the two cores' worth, plus one queued for each so
#: neither waits while the main thread computes the next targets.
_RENDER_THREADS = 2
_IN_FLIGHT = 4


@dataclass
class _Photo:
    """Everything the render loop needs to know about the photo, computed once."""

    image: np.ndarray
    texture: np.ndarray
    """What the mesh warps: the image, with the person mask as its alpha when layered."""
    landmarks: np.ndarray
    rig: HeadRig
    mesh: MeshWarp
    layer: PersonLayer | None
    eyes: EyeInterior
    mouth: MouthInterior

    def render(self, vertices: np.ndarray, texture: np.ndarray) -> np.ndarray:
        """``texture`` (``self.texture``, or a frame's version of it) with the mesh vertices moved
        to ``vertices``; RGB."""
        if self.layer is None:
            return self.mesh.warp(texture, vertices)
        return self.layer.render(self.mesh, vertices, texture)


def _analyse_photo(original: np.ndarray, short_side: int, quality: Quality) -> _Photo:
    height, width = original.shape[:2]
    size = output_size(width, height, short_side)
    window = (0, 0, width, height)
    if abs(size[0] / size[1] - width / height) > 0.01:  # beyond 16:9: crop around the face
        face = detect_photo_face(original)
        window = crop_window(width, height, tuple(face[:, :2].mean(0)))
    image = fit_photo(original, size, window)
    landmarks = detect_photo_face(image)
    scale = short_side / 720
    person = person_mask(image)
    rig = HeadRig(landmarks, size, person, body_sway=quality.layered)
    mesh = rig.mesh(max(2, round(quality.grid_step * scale)))
    layer = PersonLayer(image, person, tolerance=1.5 * scale) if quality.layered else None
    eyes = EyeInterior(image, landmarks)
    mouth = MouthInterior(image, landmarks, feather=1.5 * scale)
    texture = image if layer is None else layer.texture(image)
    return _Photo(image, texture, landmarks, rig, mesh, layer, eyes, mouth)


def _track(
    video: Path,
    duration: float,
    fps: float,
    quality: Quality,
    log: LandmarkLog,
    mouths: MouthLog,
    on_frame: Callable[[], None],
) -> list[FaceFeatures | None]:
    """Pass 1: landmarks of every driving frame into ``log`` and its mouth into ``mouths`` (all
    pass 2 needs of the frame: the video is decoded once); returns each frame's features.

    FaceMesh releases the GIL, so a clip long enough is tracked as two halves on two threads. The
    second half's decoder seeks to the middle; the halves are split at the presentation time of the
    first frame it gives from there, so together they are exactly the frames of one decode from the
    start (pass 2's). Its tracker starts ``_TRACKER_WARM_UP_FRAMES`` before the split and logs from
    the split on, so the seam reads the face as one tracker running through would. A stream without
    timestamps is tracked whole on one thread.
    """
    if duration < _PARALLEL_TRACKING_SECONDS:
        return _track_span(media.iter_timed_frames(video), quality, log, mouths, on_frame)
    middle = duration / 2
    boundary: Future[float | None] = Future()

    def warming_up_for(split: float) -> Iterator[tuple[float | None, np.ndarray]]:
        """The frames from ``_TRACKER_WARM_UP_FRAMES`` before ``split`` on, for a span from there."""
        return media.iter_timed_frames(video, start=max(split - _TRACKER_WARM_UP_FRAMES / fps, 0.0))

    def second_half(second_log: LandmarkLog, second_mouths: MouthLog) -> list[FaceFeatures | None]:
        def frames() -> Iterator[tuple[float | None, np.ndarray]]:
            try:
                for shown, frame in warming_up_for(middle):
                    if not boundary.done() and (shown is None or shown >= middle):
                        boundary.set_result(shown)
                    yield shown, frame
            finally:
                if not boundary.done():
                    boundary.set_result(None)  # nothing from there on: the first half takes it all

        return _track_span(frames(), quality, second_log, second_mouths, on_frame, warm_until=middle)

    def first_half() -> Iterator[tuple[float | None, np.ndarray]]:
        for shown, frame in media.iter_timed_frames(video):
            if shown is not None and shown >= middle:
                split = boundary.result()
                if split is not None and shown >= split:
                    return
            yield shown, frame

    with (
        LandmarkLog() as second_log,
        MouthLog() as second_mouths,
        ThreadPoolExecutor(1, thread_name_prefix="stillmotion-track") as pool,
    ):
        later = pool.submit(second_half, second_log, second_mouths)
        try:
            features = _track_span(first_half(), quality, log, mouths, on_frame)
        finally:
            if not boundary.done():
                boundary.set_result(None)
        later_features = later.result()
        before, after = _last_face(log), _first_face(second_log)
        if before is not None and after is not None and not _same_face(before, after):
            # The fresh tracker of the second half found someone else: follow the first half's face.
            split = boundary.result()
            assert split is not None  # the second half has a face, so it yielded frames
            second_log.clear()
            second_mouths.clear()
            later_features = _track_span(
                warming_up_for(split),
                quality,
                second_log,
                second_mouths,
                lambda: None,
                follow=before,
                warm_until=split,
            )
        log.extend(second_log)
        mouths.extend(second_mouths)
    return features + later_features


def _last_face(log: LandmarkLog) -> np.ndarray | None:
    return next((lm for lm in (log[i] for i in range(log.count - 1, -1, -1)) if lm is not None), None)


def _first_face(log: LandmarkLog) -> np.ndarray | None:
    return next((lm for lm in log if lm is not None), None)


def _same_face(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two sightings are plausibly one face: centres within a face width of each other."""
    distance = float(np.linalg.norm(before[:, :2].mean(0) - after[:, :2].mean(0)))
    return distance < 2.0 * fm.interocular(before)


def _track_span(
    frames: Iterator[tuple[float | None, np.ndarray]],
    quality: Quality,
    log: LandmarkLog,
    mouths: MouthLog,
    on_frame: Callable[[], None],
    follow: np.ndarray | None = None,
    warm_until: float | None = None,
) -> list[FaceFeatures | None]:
    """Track consecutive frames with one FaceMesh, appending to ``log`` and ``mouths``; ``follow``
    is the face to keep following, when an earlier span found one. Frames shown before
    ``warm_until`` are only read, to bring the tracker in step (``_TRACKER_WARM_UP_FRAMES``)."""
    features: list[FaceFeatures | None] = []
    pending: list[int] = []  # untracked frames (turbo) waiting for the next tracked one
    previous: np.ndarray | None = None
    first = next(frames, None)
    if first is None:
        return features
    # Tracking several faces costs more per frame: only where the span starts with several people.
    with FaceTracker(follow, several=count_faces(first[1]) > 1) as tracker:
        span = _warmed_up(tracker, itertools.chain([first], frames), warm_until)
        for index, (_, frame) in enumerate(span):
            if index % quality.track_every and index > 0:
                pending.append(log.count)
                log.append(None)
                # Its landmarks are interpolated later; its mouth is placed by the last ones tracked.
                mouths.append(None if previous is None else DrivingMouth.of(frame, previous))
                features.append(None)
                on_frame()
                continue
            landmarks = tracker.track(frame)
            log.append(landmarks)
            mouths.append(None if landmarks is None else DrivingMouth.of(frame, landmarks))
            features.append(FaceFeatures.of(landmarks) if landmarks is not None else None)
            if pending and previous is not None and landmarks is not None:
                _fill_between(log, pending, previous, landmarks)
            pending, previous = [], landmarks
            on_frame()
    return features


def _warmed_up(
    tracker: FaceTracker, frames: Iterator[tuple[float | None, np.ndarray]], until: float | None
) -> Iterator[tuple[float | None, np.ndarray]]:
    """``frames`` from the first shown at or after ``until``, each one before it read by ``tracker``
    and its reading dropped."""
    for shown, frame in frames:
        if until is not None and shown is not None and shown < until:
            tracker.track(frame)
            continue
        yield shown, frame


def _fill_between(log: LandmarkLog, frames: list[int], before: np.ndarray, after: np.ndarray) -> None:
    """Linear interpolation for frames skipped between two tracked ones (turbo)."""
    span = len(frames) + 1
    for k, index in enumerate(frames, start=1):
        t = k / span
        log[index] = (1 - t) * before + t * after


def _smooth_driving(log: LandmarkLog, smoothed: LandmarkLog, reference: np.ndarray, fps: float) -> float:
    """Fill ``smoothed`` with the driving motion to render: the gaps where the face was lost bridged
    (``LostFaceBridge``; ``log`` is rewritten with the bridged values), then smoothed without lag
    (``smooth_zero_phase``). Smoothing is done in face units (inter-ocular distances), so the same
    constants suit any video size; returns that unit, in pixels, to scale ``smoothed`` back by.
    """
    unit = fm.interocular(reference)
    bridge = LostFaceBridge(reference / unit, hold=round(0.5 * fps), ease=round(0.5 * fps))
    for index in range(log.count):
        raw = log[index]
        log[index] = bridge(None if raw is None else raw / unit)
    # Steady skull (pose jitter is what viewers notice), quicker irises, eye corners and lips, lids
    # as tracked.
    cutoff = np.full((fm.N_LANDMARKS, 1), _POSE_CUTOFF_HZ)
    cutoff[fm.EXPRESSIVE] = _EXPRESSION_CUTOFF_HZ
    cutoff[np.setdiff1d(fm.LIDS, fm.EYE_CORNERS)] = _LID_CUTOFF_HZ
    smooth_zero_phase(
        log, smoothed, lambda: OneEuroFilter(fps, min_cutoff=cutoff, beta=_SPEED_COEFFICIENT, d_cutoff=1.0)
    )
    return unit


class _DrivingStream:
    """Pass 2's view of the driving video, from what pass 1 kept: the smoothed landmarks
    (``_smooth_driving``) looked up at fractional positions on the timeline, and each frame's mouth."""

    def __init__(self, motion: LandmarkLog, mouths: MouthLog, unit: float):
        self._motion = motion
        self._mouths = mouths
        self._unit = unit

    def _landmarks(self, index: int) -> np.ndarray:
        landmarks = self._motion[index]
        assert landmarks is not None  # smoothing leaves no gaps
        return landmarks * self._unit

    def at(self, position: float) -> tuple[np.ndarray, DrivingMouth | None, np.ndarray]:
        """(landmarks at ``position``, the nearest frame's mouth, that frame's landmarks)."""
        first = int(position)
        last = min(first + 1, self._motion.count - 1)
        t = position - first
        before, after = self._landmarks(first), self._landmarks(last)
        nearest, landmarks = (last, after) if t >= 0.5 else (first, before)
        return (1 - t) * before + t * after, self._mouths[nearest], landmarks


def _render(
    subject: _Photo,
    vertices: np.ndarray,
    eyes: list[EyePaint],
    mouth: MouthPaint | None,
    stages: _Stages,
) -> np.ndarray:
    """One output frame: the photo warped to ``vertices``, its eyes repainted and the inner mouth
    drawn in (``eyes`` and ``mouth`` worked out on the main thread)."""
    with stages("warp"):
        frame = subject.render(vertices, subject.mouth.texture(mouth, subject.texture))
    with stages("eyes"):
        subject.eyes.paint(frame, eyes)
    if mouth is not None:
        with stages("mouth"):
            subject.mouth.paint(frame, mouth)
    return frame


@contextlib.contextmanager
def _opencv_single_threaded() -> Iterator[None]:
    """Frames are rendered on their own threads, one per core: OpenCV splitting each call over the
    same cores again only adds overhead (about 15% more CPU per frame, measured)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def animate(
    photo: Path | np.ndarray,
    video: Path,
    output: Path,
    options: RenderOptions,
    on_progress: ProgressCallback | None = None,
    observer: FrameObserver | None = None,
) -> RenderReport:
    """Render ``output`` (MP4): the face in ``photo`` moving, speaking and emoting like the face in
    ``video``, with its sound when ``options.audio``. ``photo`` is a file, or its pixels as
    ``media.read_image`` decoded them (a caller that has already read it need not read it again).

    ``on_progress(done, total)`` is called after every tracked and every rendered frame; an exception
    raised from it aborts the render and no output file is left behind. ``observer``, when given,
    receives a ``FrameTrace`` of every output frame. Raises ``InputError`` subclasses for inputs that
    cannot be used.

    The first call tunes the process's C allocator to reuse freed frame buffers
    (``allocator.keep_freed_memory``).
    """
    keep_freed_memory()
    with _opencv_single_threaded():
        return _animate(photo, video, output, options, on_progress, observer)


def _animate(
    photo: Path | np.ndarray,
    video: Path,
    output: Path,
    options: RenderOptions,
    on_progress: ProgressCallback | None,
    observer: FrameObserver | None,
) -> RenderReport:
    stages = _Stages()
    quality = Quality.for_options(options)
    with stages("probe"):
        info = media.probe_video(video)
        original = media.photo_pixels(photo)
    fps_in = float(info.fps)
    fps_out = info.fps if options.target_fps is None else Fraction(options.target_fps)
    estimate = max(info.frame_count, 1)
    n_estimate, _ = resample_positions(
        estimate, fps_in, None if options.target_fps is None else float(fps_out)
    )
    done, total = 0, estimate + n_estimate

    # The photo is analysed on a second thread while pass 1 tracks the video: MediaPipe releases
    # the GIL, so the two overlap on two cores. A photo error stops the tracking at the next frame.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stillmotion-photo")
    analysis = pool.submit(_timed, _analyse_photo, original, options.resolution, quality)

    progress_lock = threading.Lock()

    def tick() -> None:  # called from the tracking threads and the main thread
        nonlocal done
        if analysis.done() and analysis.exception() is not None:
            analysis.result()  # raises the photo's error
        with progress_lock:
            done += 1
            if on_progress is not None:
                on_progress(done, max(total, done))

    with pool, LandmarkLog() as log, LandmarkLog() as motion, MouthLog() as mouths:
        with stages("track"):
            features = _track(video, info.duration, fps_in, quality, log, mouths, tick)
        subject, stages.seconds["analyse_photo"] = analysis.result()
        height, width = subject.image.shape[:2]
        if log.count == 0:
            raise MediaError(f"{video.name}: the video has no frames")
        if all(f is None for f in features):
            raise NoFaceError(
                "no face found in the driving video: use a clip in which one face is "
                "visible, front-facing and well lit"
            )
        reference_index = choose_reference(features)
        reference = log[reference_index]
        assert reference is not None
        n_out, positions = resample_positions(
            log.count, fps_in, None if options.target_fps is None else float(fps_out)
        )
        total = log.count + n_out
        duration = n_out / float(fps_out)
        with stages("smooth"):
            unit = _smooth_driving(log, motion, reference, fps_in)
        # Motion is measured from the reference as smoothed, like every frame it is compared with:
        # the raw frame's own tracking noise would otherwise be added to every output frame.
        smoothed_reference = motion[reference_index]
        assert smoothed_reference is not None
        retarget = Retargeter(subject.landmarks, smoothed_reference * unit)
        driving = _DrivingStream(motion, mouths, unit)
        audio_source = video if options.audio and info.has_audio else None
        with media.VideoWriter(
            output,
            width,
            height,
            fps_out,
            preset=quality.preset,
            crf=quality.crf,
            audio_source=audio_source,
            duration=duration,
        ) as writer:
            # Targets are computed here, in order, as the driving frames are read; the frames
            # themselves are independent, so they render on worker threads (OpenCV releases the GIL)
            # and are written back in order.
            pending: deque[Future[np.ndarray]] = deque()
            with ThreadPoolExecutor(_RENDER_THREADS, thread_name_prefix="stillmotion-render") as renderers:
                for index, position in enumerate(positions):
                    with stages("drive"):
                        target_lm, driving_mouth, driving_lm = driving.at(float(position))
                        target = retarget.target(target_lm)
                        vertices = subject.rig.vertices(target)
                        eyes = subject.eyes.prepare(target)
                        mouth = subject.mouth.prepare(target, driving_mouth, driving_lm)
                    pending.append(renderers.submit(_render, subject, vertices, eyes, mouth, stages))
                    if observer is not None:
                        observer(
                            FrameTrace(index, target, target_lm, vertices, subject.landmarks, subject.mesh)
                        )
                    while len(pending) > (_IN_FLIGHT if index < len(positions) - 1 else 0):
                        frame = pending.popleft().result()
                        with stages("encode"):
                            writer.write(frame)
                        tick()
    return RenderReport(
        output=output,
        width=width,
        height=height,
        fps=fps_out,
        frames=n_out,
        duration=duration,
        has_audio=writer.has_audio,
        seed=options.seed,
        stage_seconds=stages.seconds,
    )
