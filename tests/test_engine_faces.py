"""Whose face moves: the largest in the photo; in the driving video, one face from start to end, read
as one tracker running through would."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stillmotion.engine import face_model as fm
from stillmotion.engine import media, pipeline
from stillmotion.engine.landmark_log import LandmarkLog
from stillmotion.engine.mouth_log import MouthLog
from stillmotion.engine.options import RenderOptions
from stillmotion.engine.pipeline import FrameTrace, Quality, animate
from stillmotion.engine.tracking import FaceTracker, detect_photo_face

HALF_W, HEIGHT = 352, 288


def _two_people(photo: Path, driving: Path, out: Path) -> Path:
    """The talking man on the left; on the right a still face that grows until, from the middle of
    the clip on, it is the larger of the two (so a tracker starting afresh there would pick it)."""
    face = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)[40:230, 150:340]
    info = media.probe_video(driving)
    with media.VideoWriter(out, 2 * HALF_W, HEIGHT, info.fps, preset="ultrafast") as writer:
        for index, frame in enumerate(media.iter_frames(driving)):
            canvas = np.full((HEIGHT, 2 * HALF_W, 3), 200, np.uint8)
            canvas[:, :HALF_W] = cv2.resize(frame, (HALF_W, HEIGHT), interpolation=cv2.INTER_CUBIC)
            side = int(np.interp(index, [0, info.frame_count // 2], [120, 280]))
            grown = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
            top, left = (HEIGHT - side) // 2, HALF_W + (HALF_W - side) // 2
            canvas[top : top + side, left : left + side] = grown
            writer.write(canvas)
    return out


def test_one_driving_face_is_followed_from_start_to_end(photo, driving, tmp_path):
    clip = _two_people(photo, driving, tmp_path / "two.mp4")
    middle = list(media.iter_frames(clip))[70]
    assert detect_photo_face(middle)[:, 0].mean() > HALF_W  # the other face is the larger there
    centres: list[float] = []

    def watch(trace: FrameTrace) -> None:
        centres.append(float(trace.driving[:, 0].mean()))

    animate(photo, clip, tmp_path / "out.mp4", RenderOptions(turbo=True), observer=watch)
    assert len(centres) == 120 and max(centres) < HALF_W


def test_the_largest_face_of_a_group_photo_is_animated(photo, tmp_path):
    small = cv2.resize(cv2.imread(str(photo)), (256, 256), interpolation=cv2.INTER_AREA)
    group = np.full((512, 1024, 3), 180, np.uint8)
    group[:, :512] = cv2.imread(str(photo))
    group[128:384, 640:896] = small
    rgb = cv2.cvtColor(group, cv2.COLOR_BGR2RGB)
    assert detect_photo_face(rgb)[:, 0].mean() < 512


def test_paintings_and_drawings_animate_where_facemesh_finds_a_face(photo, driving, tmp_path):
    bgr = cv2.imread(str(photo))
    painting = cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)  # Gastal & Oliveira's edge-aware filter
    drawing, _ = cv2.pencilSketch(bgr, sigma_s=60, sigma_r=0.07, shade_factor=0.02)  # grey pencil
    for name, image in (("painting", painting), ("drawing", cv2.cvtColor(drawing, cv2.COLOR_GRAY2BGR))):
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), image)
        out = tmp_path / f"{name}.mp4"
        report = animate(path, driving, out, RenderOptions(turbo=True))
        frames = list(media.iter_frames(out))
        assert report.frames == 120 and len(frames) == 120
        assert np.abs(frames[60].astype(int) - frames[0].astype(int)).mean() > 0.5, name


def test_the_seam_between_the_tracking_halves_reads_as_one_tracker_running_through(driving, tmp_path):
    """Pass 1 tracks a clip of 3 s or more as two halves on two threads. The second half's tracker
    starts before the seam, so the frames after it are read as by one tracker from the start; started
    cold at the seam, it read the sample's frame 60 0.041 inter-ocular distances away (a twitch)."""
    info = media.probe_video(driving)
    assert info.duration >= pipeline._PARALLEL_TRACKING_SECONDS  # so it is tracked as two halves
    quality = Quality.for_options(RenderOptions())
    with LandmarkLog(tmp_path) as log, MouthLog(tmp_path) as mouths:
        pipeline._track(driving, info.duration, float(info.fps), quality, log, mouths, lambda: None)
        halves = [log[index] for index in range(log.count)]
    with FaceTracker() as tracker:
        whole = [tracker.track(frame) for frame in media.iter_frames(driving)]
    assert len(halves) == len(whole) == info.frame_count
    errors = [
        np.linalg.norm(half[:, :2] - one[:, :2], axis=1).mean() / fm.interocular(one)
        for half, one in zip(halves, whole, strict=True)
        if half is not None and one is not None
    ]
    assert len(errors) == len(whole)
    assert max(errors) < 0.005
