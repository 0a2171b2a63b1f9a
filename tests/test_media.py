"""The engine's media I/O on real files, decoded for real: photos, probing, decoding, encoding, audio."""

from __future__ import annotations

import os
import re
import stat
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import psutil
import pytest

from stillmotion import limits
from stillmotion.engine import media
from stillmotion.engine.media import VideoInfo, VideoWriter, iter_frames, probe_video, read_image
from stillmotion.errors import LimitError, MediaError
from stillmotion.samples import sample_image, sample_video

from media_factory import (
    audio_only,
    bogus_duration_video,
    click_onsets,
    corrupt_file,
    empty_video,
    is_marked,
    jpeg_with_orientation,
    looped_video,
    mjpeg_avi,
    rotated_copy,
    still_video,
    tone_wav,
    truncated_copy,
    video_with_fps,
    with_audio,
    with_damaged_audio,
    with_damaged_video,
)

CARPHONE_FPS = Fraction(30000, 1001)
AAC_FRAME = 1024
VIDEO_ALLOWED = re.escape("(allowed: MP4, MOV, WebM, MKV, AVI with H.264, HEVC, VP8/9, AV1, MPEG-4)")
IMAGE_ALLOWED = re.escape("(allowed: PNG, JPEG, WebP, BMP, TIFF)")


# --------------------------------------------------------------------------------------------------
# helpers


def _render(source: Path, out: Path) -> VideoWriter:
    """What the pipeline does, minus the animation: decode the driving video, encode its frames and audio.

    No ``duration``: the audio must end with the frames written.
    """
    info = probe_video(source)
    with VideoWriter(out, info.width, info.height, info.fps, audio_source=source) as writer:
        for frame in iter_frames(source):
            writer.write(frame)
    return writer


def _decoded_audio(path: Path) -> tuple[np.ndarray, int, float]:
    """The first channel of a file's audio, its sample rate, and the time of its first sample."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
        rate = container.streams.audio[0].sample_rate
    return np.concatenate([frame.to_ndarray()[0] for frame in frames]), rate, frames[0].time


def _stream_facts(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts: dict[str, object] = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "rate": video.average_rate,
            "video_seconds": float(video.duration * video.time_base),
            "audio_streams": len(container.streams.audio),
        }
        if container.streams.audio:
            audio = container.streams.audio[0]
            facts["audio_start"] = float(audio.start_time * audio.time_base)
            facts["audio_seconds"] = float(audio.duration * audio.time_base)
            facts["audio_rate"] = audio.sample_rate
    return facts


def _frames(n: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Distinct, deterministic, smooth frames (so lossy coding stays close): a gradient that brightens."""
    x = np.linspace(0, 120, width)[None, :, None]
    y = np.linspace(0, 60, height)[:, None, None]
    return [(x + y + np.array([20, 40, 60]) + i).clip(0, 255).astype(np.uint8) for i in range(n)]


def _write(out: Path, frames: list[np.ndarray], fps: Fraction, **kwargs: object) -> VideoWriter:
    height, width = frames[0].shape[:2]
    with VideoWriter(out, width, height, fps, **kwargs) as writer:  # type: ignore[arg-type]
        for frame in frames:
            writer.write(frame)
    return writer


def _decode(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path)))


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clicks(media_dir: Path) -> Path:
    """Carphone with white frames 30 and 90 and a click at each, audio starting with the video."""
    return with_audio(sample_video(), media_dir / "clicks.mp4")


# --------------------------------------------------------------------------------------------------
# read_image


def test_read_image_sample_is_rgb_uint8() -> None:
    image = read_image(sample_image())
    expected = cv2.cvtColor(cv2.imread(str(sample_image())), cv2.COLOR_BGR2RGB)
    assert image.dtype == np.uint8 and image.shape == (512, 512, 3)
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_read_image_formats(tmp_path: Path, suffix: str) -> None:
    rgb = _frames(1, 96, 80)[0]
    path = tmp_path / f"photo{suffix}"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    image = read_image(path)
    assert image.shape == (80, 96, 3) and image.dtype == np.uint8
    lossy = suffix in (".jpg", ".webp")
    assert np.abs(image.astype(int) - rgb).mean() < (8 if lossy else 1e-9)


def test_read_image_grey_becomes_rgb(tmp_path: Path) -> None:
    grey = np.tile(np.arange(100, dtype=np.uint8), (70, 1))
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (70, 100, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], grey)


def test_read_image_alpha_is_composited_on_white(tmp_path: Path) -> None:
    bgra = np.zeros((64, 96, 4), np.uint8)
    bgra[:, :, 2] = 200  # red
    bgra[:, :32, 3] = 0  # transparent
    bgra[:, 32:64, 3] = 255  # opaque
    bgra[:, 64:, 3] = 128  # half
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    image = read_image(tmp_path / "alpha.png").astype(int)
    assert (image[:, :32] == 255).all()
    assert (image[:, 32:64] == [200, 0, 0]).all()
    np.testing.assert_allclose(image[0, 80], [200 * 128 / 255 + 127, 127, 127], atol=1)


def test_read_image_16_bit(tmp_path: Path) -> None:
    rgb16 = np.full((64, 64, 3), 65535, np.uint16)
    rgb16[:, :, 0] = 257 * 10
    cv2.imwrite(str(tmp_path / "deep.png"), rgb16)
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and (image[:, :, 2] == 10).all() and (image[:, :, 0] == 255).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_image_applies_exif_orientation_like_opencv(tmp_path: Path, orientation: int) -> None:
    rgb = _frames(1, 96, 64)[0]
    rgb[:8, :8] = 0  # an asymmetric mark, so every turn and mirror looks different
    path = jpeg_with_orientation(tmp_path / "turned.jpg", rgb, orientation)
    upright = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = read_image(path)
    assert image.shape == ((64, 96, 3) if orientation <= 4 else (96, 64, 3))
    np.testing.assert_array_equal(image, upright)


def test_read_image_refuses_by_content_not_extension(tmp_path: Path) -> None:
    png_named_jpg = tmp_path / "photo.jpg"
    png_named_jpg.write_bytes(sample_image().read_bytes())
    assert read_image(png_named_jpg).shape == (512, 512, 3)
    text = tmp_path / "photo.png"
    text.write_text("hello, not a picture")
    with pytest.raises(MediaError, match=rf"^photo\.png: not an image we can read {IMAGE_ALLOWED}$"):
        read_image(text)
    with pytest.raises(MediaError, match=r"^clip\.mp4: not an image we can read"):
        read_image(truncated_copy(sample_video(), tmp_path / "clip.mp4", 1.0))


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"^missing\.png: no such file$"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").touch()
    with pytest.raises(MediaError, match=r"^empty\.png: the file is empty$"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(MediaError, match=r"^folder\.png: not a regular file$"):
        read_image(tmp_path / "folder.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(sample_image().read_bytes()[:2000])
    with pytest.raises(
        MediaError, match=rf"^broken\.png: the image is corrupt or truncated {IMAGE_ALLOWED}$"
    ):
        read_image(broken)


def test_read_image_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as sparse:  # a sparse file: checked by size, never read
        sparse.truncate(limits.MAX_IMAGE_BYTES + 1)
    with pytest.raises(LimitError, match=r"^big\.png: 30\.0 MB, more than the 30 MB allowed$"):
        read_image(big)
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((6000, 9000), np.uint8))
    with pytest.raises(LimitError, match=r"^photo\.png: 9000x6000 is 54\.0 MP, more than the 40 MP allowed$"):
        read_image(tmp_path / "photo.png")
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((40, 300, 3), np.uint8))
    with pytest.raises(
        LimitError, match=r"^tiny\.png: 300x40 is too small \(the shorter side must be at least 64 px\)$"
    ):
        read_image(tmp_path / "tiny.png")


# --------------------------------------------------------------------------------------------------
# probe_video and iter_frames


def test_probe_carphone() -> None:
    info = probe_video(sample_video())
    assert info == VideoInfo(
        width=176,
        height=144,
        fps=CARPHONE_FPS,
        frame_count=120,
        duration=float(120 / CARPHONE_FPS),
        has_audio=False,
        size_bytes=sample_video().stat().st_size,
    )
    assert isinstance(info.fps, Fraction)


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(25)])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_probe_keeps_exact_rate_and_estimates_missing_count(
    media_dir: Path, fps: Fraction, suffix: str
) -> None:
    # Matroska stores no frame count: it is estimated from the duration.
    info = probe_video(video_with_fps(sample_video(), media_dir / f"rate{fps.numerator}{suffix}", fps))
    assert (info.fps, info.frame_count) == (fps, 120)
    assert info.duration == pytest.approx(float(120 / fps))


def test_a_stream_with_a_bogus_duration_keeps_its_nominal_rate(media_dir: Path) -> None:
    bogus = bogus_duration_video(sample_video(), media_dir / "bogus.mp4")
    with av.open(str(bogus)) as container:  # the file really does claim an absurd average rate
        assert container.streams.video[0].average_rate > 1000
    info = probe_video(bogus)
    assert info.fps == Fraction(30000, 1001) and info.frame_count == 120
    assert info.duration == pytest.approx(120 * 1001 / 30000)


def test_probe_and_frames_of_a_rotated_phone_video(media_dir: Path) -> None:
    turned = rotated_copy(sample_video(), media_dir / "portrait.mp4", -90)
    info = probe_video(turned)
    assert (info.width, info.height) == (144, 176)
    stored = next(iter(iter_frames(sample_video())))
    shown = next(iter(iter_frames(turned)))
    np.testing.assert_array_equal(shown, np.rot90(stored, -1))  # shown turned a quarter clockwise


def test_iter_frames_streams_rgb_frames() -> None:
    frames = list(iter_frames(sample_video()))
    assert len(frames) == 120
    assert all(f.shape == (144, 176, 3) and f.dtype == np.uint8 and f.flags.c_contiguous for f in frames)
    with av.open(str(sample_video())) as container:
        reference = next(container.decode(video=0)).to_ndarray(format="rgb24")
    np.testing.assert_array_equal(frames[0], reference)


def test_iter_frames_uses_decoder_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = media._decoded

    def spy(container: av.container.InputContainer, stream: av.VideoStream, name: str):  # type: ignore[no-untyped-def]
        seen.append(stream.thread_type.name)
        return original(container, stream, name)

    monkeypatch.setattr(media, "_decoded", spy)
    next(iter(iter_frames(sample_video())))
    assert seen == ["AUTO"]


def test_iter_frames_memory_stays_flat_on_a_long_video(media_dir: Path) -> None:
    # 60 s of frames would be 136 MB as RGB arrays; streaming holds a handful.
    long = looped_video(sample_video(), media_dir / "long.mp4", 60)
    process = psutil.Process()
    before = process.memory_info().rss
    count = sum(1 for _ in iter_frames(long))
    assert count == probe_video(long).frame_count == 1798
    assert process.memory_info().rss - before < 40 * 1024 * 1024


def test_iter_frames_skips_a_damaged_packet(media_dir: Path) -> None:
    damaged = with_damaged_video(sample_video(), media_dir / "damaged_video.mp4", packets=(40,))
    frames = list(iter_frames(damaged))
    assert 100 <= len(frames) <= 120
    assert probe_video(damaged).frame_count == 120


def test_iter_frames_of_a_cut_download_ends_after_the_last_good_frame(media_dir: Path) -> None:
    # A faststart MP4 (index first) cut in half: the first half still decodes. Noise makes the frames
    # big enough that the cut falls among them rather than in the index.
    noise = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(60)]
    whole = _write(media_dir / "whole.mp4", noise, Fraction(25)).path
    cut = truncated_copy(whole, media_dir / "cut.mp4", 0.5)
    assert 5 <= len(list(iter_frames(cut))) < 60


def test_probe_errors(media_dir: Path, tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.mp4": r"no such file",
        corrupt_file(tmp_path / "video.mp4"): rf"not a video file we can read {VIDEO_ALLOWED}",
        # carphone keeps its index at the end: half of it cannot be opened at all.
        truncated_copy(
            sample_video(), tmp_path / "half.mp4"
        ): rf"not a video file we can read {VIDEO_ALLOWED}",
        sample_image(): rf"not a video file we can read {VIDEO_ALLOWED}",  # FFmpeg could read it; we do not
        tone_wav(tmp_path / "tone.wav", 1.0): rf"not a video file we can read {VIDEO_ALLOWED}",
        empty_video(tmp_path / "clip.mp4"): r"the video has no frames",
        audio_only(tmp_path / "song.m4a"): rf"the file has no video stream {VIDEO_ALLOWED}",
        mjpeg_avi(tmp_path / "camera.avi"): rf"the video codec mjpeg is not supported {VIDEO_ALLOWED}",
    }
    (tmp_path / "nothing.mp4").touch()
    cases[tmp_path / "nothing.mp4"] = r"the file is empty"
    for path, message in cases.items():
        expected = rf"^{re.escape(path.name)}: {message}$"
        with pytest.raises(MediaError, match=expected):
            probe_video(path)
        with pytest.raises(MediaError, match=expected):
            next(iter(iter_frames(path)))


def test_probe_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as sparse:
        sparse.truncate(limits.MAX_VIDEO_BYTES + 1)
    with pytest.raises(LimitError, match=r"^big\.mp4: 500\.0 MB, more than the 500 MB allowed$"):
        probe_video(big)
    long = still_video(np.zeros((16, 16, 3), np.uint8), tmp_path / "clip.mp4", 700, Fraction(1))
    with pytest.raises(LimitError, match=r"^clip\.mp4: 700 s long, more than the 600 s allowed$"):
        probe_video(long)
    huge = still_video(np.zeros((2200, 4000, 3), np.uint8), tmp_path / "huge.mp4", 1, Fraction(1))
    with pytest.raises(LimitError, match=r"^huge\.mp4: 4000x2200 is 8\.8 MP, more than the 8\.3 MP allowed$"):
        probe_video(huge)


# --------------------------------------------------------------------------------------------------
# VideoWriter: video


@pytest.mark.parametrize(
    "fps", [Fraction(30000, 1001), Fraction(24000, 1001), Fraction(24), Fraction(48), Fraction(25)]
)
def test_writer_keeps_the_exact_rate(tmp_path: Path, fps: Fraction) -> None:
    writer = _write(tmp_path / "out.mp4", _frames(30), fps)
    assert not writer.has_audio
    info = probe_video(tmp_path / "out.mp4")
    assert (info.fps, info.frame_count, info.width, info.height) == (fps, 30, 64, 48)
    facts = _stream_facts(tmp_path / "out.mp4")
    assert (facts["codec"], facts["pix_fmt"], facts["rate"], facts["audio_streams"]) == (
        "h264",
        "yuv420p",
        fps,
        0,
    )
    assert facts["video_seconds"] == pytest.approx(float(30 / fps), abs=float(1 / fps))


def test_writer_output_is_faststart_and_decodes_close_to_the_input(tmp_path: Path) -> None:
    frames = _frames(10, 128, 96)
    _write(tmp_path / "out.mp4", frames, Fraction(25))
    data = (tmp_path / "out.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # browsers can start playing before the end
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.mp4").stat().st_mode) == 0o666 & ~umask  # not owner-only
    decoded = _decode(tmp_path / "out.mp4")
    assert np.abs(decoded.astype(int) - np.stack(frames)).mean() < 1.5


def test_writer_is_deterministic(tmp_path: Path) -> None:
    frames = _frames(40, 96, 64)
    _write(tmp_path / "a.mp4", frames, CARPHONE_FPS)
    _write(tmp_path / "b.mp4", frames, CARPHONE_FPS)
    np.testing.assert_array_equal(_decode(tmp_path / "a.mp4"), _decode(tmp_path / "b.mp4"))


def test_writer_refuses_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "out.mp4", 65, 48, Fraction(25))
    with VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(25)) as writer:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\) uint8"):
            writer.write(np.zeros((48, 66, 3), np.uint8))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert probe_video(tmp_path / "out.mp4").frame_count == 1


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_writer_leaves_nothing_when_the_caller_fails(tmp_path: Path, error: type[BaseException]) -> None:
    with pytest.raises(error), VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(25)) as writer:
        for frame in _frames(20):
            writer.write(frame)
        raise error("stop")
    assert os.listdir(tmp_path) == []


def test_writer_hands_encoder_errors_to_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, frame: av.VideoFrame) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(media._Encoder, "encode", broken)
    with (
        pytest.raises(OSError, match="disk full"),
        VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(25)) as w,
    ):
        for frame in _frames(50):
            w.write(frame)
    assert os.listdir(tmp_path) == []


def test_writer_refuses_bad_settings_at_once(tmp_path: Path) -> None:
    with (
        pytest.raises(av.FFmpegError),
        VideoWriter(tmp_path / "out.mp4", 64, 48, Fraction(25), preset="warp"),
    ):
        pass
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# VideoWriter: audio


def test_no_audio_source_or_no_audio_stream_gives_no_audio(tmp_path: Path) -> None:
    writer = _render(sample_video(), tmp_path / "out.mp4")
    assert not writer.has_audio
    assert _stream_facts(tmp_path / "out.mp4")["audio_streams"] == 0


def test_audio_starts_at_zero_and_lasts_as_long_as_the_video(clicks: Path, tmp_path: Path) -> None:
    writer = _render(clicks, tmp_path / "out.mp4")
    assert writer.has_audio
    facts = _stream_facts(tmp_path / "out.mp4")
    video_seconds = float(120 / CARPHONE_FPS)
    assert facts["audio_rate"] == 48000
    assert facts["audio_start"] == 0
    assert facts["audio_seconds"] == pytest.approx(video_seconds, abs=AAC_FRAME / 48000)
    samples, rate, first = _decoded_audio(tmp_path / "out.mp4")
    assert first == pytest.approx(0, abs=AAC_FRAME / rate)
    assert len(samples) / rate == pytest.approx(video_seconds, abs=AAC_FRAME / rate)


def _assert_in_sync(path: Path) -> None:
    """Every click in the output starts within one frame of a white frame, and there are two of each."""
    fps = probe_video(path).fps
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        start = video.start_time * video.time_base
    marks = [start + index / fps for index, frame in enumerate(iter_frames(path)) if is_marked(frame)]
    samples, rate, first = _decoded_audio(path)
    onsets = [first + onset for onset in click_onsets(samples, rate)]
    assert len(marks) == len(onsets) == 2
    for mark, onset in zip(marks, onsets, strict=True):
        assert abs(float(mark) - onset) < float(1 / fps)


@pytest.mark.parametrize("offset", [0.0, 0.5, -0.5])
def test_audio_stays_in_sync_whenever_the_source_audio_starts(
    media_dir: Path, tmp_path: Path, offset: float
) -> None:
    # +0.5: the source audio starts late and is padded; -0.5: it starts early and is cut.
    source = with_audio(sample_video(), media_dir / f"offset{offset}.mp4", offset_s=offset)
    _assert_in_sync(source)
    _render(source, tmp_path / "out.mp4")
    _assert_in_sync(tmp_path / "out.mp4")
    assert _stream_facts(tmp_path / "out.mp4")["audio_start"] == 0


def test_audio_is_interleaved_with_the_video(media_dir: Path, tmp_path: Path) -> None:
    # Longer than FFmpeg's 10 s interleaving window, within which the muxer reorders whatever it is
    # given: beyond it, only audio pulled along with the video stays next to it in the file (audio
    # written last leaves seconds of video between audio packets: 2 s measured, against 0.2 s).
    long = looped_video(sample_video(), media_dir / "twelve.mp4", 12)
    _render(with_audio(long, media_dir / "twelve_audio.mp4"), tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as container:
        packets = sorted(
            (packet.pos, packet.stream.type, float(packet.pts * packet.time_base))
            for packet in container.demux()
            if packet.size
        )
    latest = {"video": 0.0, "audio": 0.0}
    drift = 0.0
    for _, kind, time in packets:
        latest[kind] = max(latest[kind], time)
        drift = max(drift, abs(latest["video"] - latest["audio"]))
    assert latest["video"] > 11.5 and latest["audio"] > 11.5
    assert drift < 0.5


def test_damaged_audio_packets_are_skipped_and_keep_sync(media_dir: Path, tmp_path: Path) -> None:
    damaged = with_damaged_audio(sample_video(), media_dir / "damaged_audio.mp4")
    with av.open(str(damaged)) as container:
        failures = 0
        for packet in container.demux(audio=0):
            try:
                packet.decode()
            except av.FFmpegError:
                failures += 1
    assert failures == 3  # the factory really damages what it says
    writer = _render(damaged, tmp_path / "out.mp4")
    assert writer.has_audio
    _assert_in_sync(tmp_path / "out.mp4")


@pytest.mark.parametrize(("tone_seconds", "rate"), [(2.0, 44100), (10.0, 37800)])
def test_audio_is_padded_or_cut_to_the_duration(tmp_path: Path, tone_seconds: float, rate: int) -> None:
    # 37800 Hz is no AAC rate: resampled to 48 kHz. The onset at 1 s must survive either way.
    wav = tone_wav(tmp_path / "tone.wav", tone_seconds, rate, 440.0, onset_s=1.0)
    frames = _frames(100)
    _write(tmp_path / "out.mp4", frames, Fraction(25), audio_source=wav, duration=4.0)
    facts = _stream_facts(tmp_path / "out.mp4")
    out_rate = 44100 if rate == 44100 else 48000
    assert facts["audio_rate"] == out_rate
    assert facts["audio_seconds"] == pytest.approx(4.0, abs=AAC_FRAME / out_rate)
    samples, _, first = _decoded_audio(tmp_path / "out.mp4")
    loud = np.flatnonzero(np.abs(samples) > 0.1)
    assert first + loud[0] / out_rate == pytest.approx(1.0, abs=0.01)
    tone_end = min(tone_seconds, 4.0)
    assert first + loud[-1] / out_rate == pytest.approx(tone_end, abs=AAC_FRAME / out_rate)


def test_ping_pong_scales_the_clip_to_a_phones_height(driving: Path, tmp_path: Path) -> None:
    from stillmotion.samples import ping_pong

    scaled = ping_pong(driving, tmp_path / "scaled.mp4", 0.5, height=1080)
    info = media.probe_video(scaled)
    source = media.probe_video(driving)
    assert (info.height, info.width % 2) == (1080, 0)
    assert abs(info.width / info.height - source.width / source.height) < 0.01
    assert info.frame_count == round(0.5 * float(source.fps))
