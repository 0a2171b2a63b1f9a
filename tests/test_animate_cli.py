"""``stillmotion animate`` end to end: the real CLI, the real engine, real media (issue 2)."""

from __future__ import annotations

import functools
import itertools
import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from stillmotion.engine import media

from http_support import QuietHandler, serve_http
from media_factory import click_onsets, still_video, with_audio, with_damaged_audio
from video_checks import audio_samples, frame_digest, frames, probe

ONE_FRAME = 1001 / 30000  # carphone's frame duration


def animate(cli, photo: Path, video: Path, out: Path, *options: object) -> dict:
    result = cli(
        "animate",
        "--image",
        photo,
        "--video",
        video,
        "--output",
        out,
        "--json",
        "--disable-safety-checker",
        *options,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def talking(tmp_path_factory, driving) -> Path:
    """carphone with a click track: clicks at frames 30 and 90 (those frames are white)."""
    return with_audio(driving, tmp_path_factory.mktemp("talking") / "talking.mp4")


def test_sample_renders_to_the_output_contract(cli, photo, driving, tmp_path):
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, driving, out)
    got = probe(out)
    assert (got.codec, got.pix_fmt) == ("h264", "yuv420p")
    assert (got.width, got.height) == (720, 720)  # the square photo's aspect, short side 720
    assert got.rate == Fraction(30000, 1001)
    assert got.frames == 120
    assert abs(got.video_seconds - 120 * ONE_FRAME) < ONE_FRAME
    assert got.audio_codec is None  # carphone has no sound
    assert report["output"] == str(out)
    assert report["fps"] == "30000/1001" and report["frames"] == 120 and report["has_audio"] is False
    assert report["seed"] == 42 and {"track", "warp", "encode"} <= set(report["seconds"])
    assert leftovers(tmp_path, {"out.mp4"}) == []
    # The face moves: frames differ from each other around the face, not only by noise.
    rendered = frames(out)
    assert np.abs(rendered[60].astype(int) - rendered[0].astype(int)).mean() > 1.0


def test_the_driving_audio_is_muxed_in_sync(cli, photo, talking, tmp_path):
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, talking, out)
    got = probe(out)
    assert report["has_audio"] is True and got.audio_codec == "aac"
    assert got.audio_start is not None and abs(got.audio_start) < 0.001
    assert abs(got.audio_seconds - got.video_seconds) < ONE_FRAME
    samples, rate = audio_samples(out)
    onsets = click_onsets(samples, rate)
    assert len(onsets) == 2
    for onset, frame in zip(onsets, (30, 90), strict=True):
        assert abs(onset - frame * ONE_FRAME) < ONE_FRAME


@pytest.mark.parametrize("flag", ["--ignore-audio", "--no-save-audio"])
def test_audio_can_be_left_out(cli, photo, talking, tmp_path, flag):
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, talking, out, "--turbo", flag)
    assert report["has_audio"] is False and probe(out).audio_codec is None


def test_damaged_audio_packets_are_skipped(cli, photo, driving, tmp_path):
    damaged = with_damaged_audio(driving, tmp_path / "damaged.mp4")
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, damaged, out, "--turbo")
    got = probe(out)
    assert report["has_audio"] and abs(got.audio_seconds - got.video_seconds) < ONE_FRAME


@pytest.mark.parametrize(("target", "count"), [("24", 96), ("48", 192)])
def test_target_fps_is_exact_and_48_is_interpolated(cli, photo, driving, tmp_path, target, count):
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, driving, out, "--target-fps", target)
    got = probe(out)
    assert got.rate == Fraction(int(target)) and report["fps"] == f"{target}/1"
    assert got.frames == count
    assert abs(got.video_seconds - 120 * ONE_FRAME) < 1 / int(target)
    if target == "48":
        rendered = frames(out)
        repeats = sum(np.array_equal(a, b) for a, b in itertools.pairwise(rendered))
        assert repeats == 0


def test_1080p_keeps_a_4_3_photo_aspect_at_full_resolution(cli, photo, driving, tmp_path):
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), cv2.imread(str(photo))[64:448, :])  # 512 x 384
    out = tmp_path / "out.mp4"
    report = animate(cli, wide, driving, out, "--resolution", "1080p", "--turbo")
    assert (report["width"], report["height"]) == (1440, 1080)
    assert (probe(out).width, probe(out).height) == (1440, 1080)


def test_same_inputs_give_identical_frames_and_seed_minus_one_is_reported(cli, photo, driving, tmp_path):
    first, second, third = (tmp_path / f"{n}.mp4" for n in ("a", "b", "c"))
    animate(cli, photo, driving, first, "--turbo")
    animate(cli, photo, driving, second, "--turbo")
    assert frame_digest(first) == frame_digest(second)
    drawn = animate(cli, photo, driving, third, "--turbo", "--seed", "-1")["seed"]
    assert isinstance(drawn, int) and 0 <= drawn <= 999_999_999_999_999


def test_a_face_lost_for_a_while_does_not_fail_the_run(cli, photo, driving, tmp_path):
    gap = tmp_path / "gap.mp4"
    info = media.probe_video(driving)
    with media.VideoWriter(gap, info.width, info.height, info.fps) as writer:
        for index, frame in enumerate(media.iter_frames(driving)):
            writer.write(np.full_like(frame, 128) if 40 <= index < 75 else frame)
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, gap, out, "--turbo")
    assert report["frames"] == 120 and probe(out).frames == 120


# --- bad input: one line on stderr, exit status 2, nothing left behind --------------------------


def _no_face_png(path: Path) -> Path:
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    cv2.imwrite(str(path), cv2.merge([gradient, gradient[::-1], gradient]))
    return path


def _too_many_pixels_png(path: Path) -> Path:
    cv2.imwrite(str(path), np.zeros((5001, 8001), np.uint8))  # 40.0 MP > 40 MP allowed
    return path


def _oversized_sparse_file(path: Path) -> Path:
    with open(path, "wb") as handle:  # sparse: no disk is used
        handle.truncate(600 * 1024 * 1024)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-image", "no such file"),
        ("text-as-image", "image"),
        ("corrupt-video", "video"),
        ("no-face-photo", "no face found in the image: use a front-facing, well-lit portrait"),
        ("no-face-video", "no face found in the driving video"),
        ("empty-video", "no frames"),
        ("huge-photo", "MP"),
        ("oversized-video-file", "MB"),
        ("too-long-video", "600"),
        ("not-mp4-output", "must be an .mp4 file"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(cli, photo, driving, tmp_path, case, expected):
    image, video, out = photo, driving, tmp_path / "out.mp4"
    if case == "missing-image":
        image = tmp_path / "nope.png"
    elif case == "text-as-image":
        image = tmp_path / "notes.png"
        image.write_text("hello, not a picture\n")
    elif case == "corrupt-video":
        video = tmp_path / "corrupt.mp4"
        video.write_bytes(np.random.default_rng(1).integers(0, 256, 65536, np.uint8).tobytes())
    elif case == "no-face-photo":
        image = _no_face_png(tmp_path / "gradient.png")
    elif case == "no-face-video":
        video = still_video(_no_face_png(tmp_path / "g.png"), tmp_path / "still.mp4", seconds=2)
    elif case == "empty-video":
        from media_factory import empty_video

        video = empty_video(tmp_path / "empty.mp4")
    elif case == "huge-photo":
        image = _too_many_pixels_png(tmp_path / "huge.png")
    elif case == "oversized-video-file":
        video = _oversized_sparse_file(tmp_path / "big.mp4")
    elif case == "too-long-video":
        video = still_video(
            _no_face_png(tmp_path / "g.png"), tmp_path / "long.mp4", seconds=601, fps=Fraction(1)
        )
    elif case == "not-mp4-output":
        out = tmp_path / "out.gif"
    before = set(p.name for p in tmp_path.iterdir())
    result = cli("animate", "--image", image, "--video", video, "--output", out, "--disable-safety-checker")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("stillmotion: error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert set(p.name for p in tmp_path.iterdir()) == before  # no output, no partial file


def test_an_unknown_choice_names_the_allowed_values(cli, photo, driving, tmp_path):
    result = cli(
        "animate", "--image", photo, "--video", driving, "--output", tmp_path / "o.mp4", "--resolution", "4k"
    )
    assert result.returncode == 2
    assert "'720p'" in result.stderr and "'1080p'" in result.stderr


def test_a_23_976_driving_rate_is_kept_exactly(cli, photo, driving, tmp_path):
    from media_factory import video_with_fps

    film = video_with_fps(driving, tmp_path / "film.mp4", Fraction(24000, 1001))
    out = tmp_path / "out.mp4"
    report = animate(cli, photo, film, out, "--turbo")
    assert report["fps"] == "24000/1001" and probe(out).rate == Fraction(24000, 1001)
    assert probe(out).frames == 120


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on loopback serving ``tmp_path``."""
    with serve_http(functools.partial(QuietHandler, directory=str(tmp_path))) as base:
        yield tmp_path, base


def test_inputs_may_be_http_urls(cli, photo, driving, http_folder):
    folder, base = http_folder
    (folder / "photo.png").write_bytes(photo.read_bytes())
    (folder / "driving.mp4").write_bytes(driving.read_bytes())
    out = folder / "out.mp4"
    report = animate(cli, f"{base}/photo.png", f"{base}/driving.mp4", out, "--turbo")
    assert report["frames"] == 120 and probe(out).frames == 120
    missing = cli(
        "animate",
        "--image",
        f"{base}/nope.png",
        "--video",
        f"{base}/driving.mp4",
        "--output",
        folder / "x.mp4",
        "--disable-safety-checker",
    )
    assert missing.returncode == 2 and "404" in missing.stderr and not (folder / "x.mp4").exists()
