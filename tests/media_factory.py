"""Generators of real media files for tests: plain functions, each writes a file and returns its path.

Everything is deterministic (seeded noise, fixed encoder settings), small, and encoded with the same
PyAV build the product uses. Marked frames and clicks serve A/V sync checks: ``with_audio`` turns the
frames at ``marks`` white and puts a short tone burst at exactly their display times.
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from stillmotion.samples import ping_pong

#: Length of a click in seconds: long enough to survive AAC, far shorter than a video frame.
CLICK_SECONDS = 0.010
#: Mean brightness above which a frame counts as marked (carphone's frames average about 100).
MARK_BRIGHTNESS = 240

_AUDIO_RATE = 48000


def tone_wav(
    path: Path, seconds: float, rate: int = 48000, freq: float = 440.0, *, onset_s: float = 0.0
) -> Path:
    """A mono 16-bit WAV: silence until ``onset_s``, then a sine tone of ``freq`` Hz to the end."""
    t = np.arange(round(seconds * rate)) / rate
    signal = np.where(t >= onset_s, 0.5 * np.sin(2 * np.pi * freq * t), 0.0)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal * 32767).astype("<i2").tobytes())
    return Path(path)


def with_audio(
    video_in: Path,
    out: Path,
    tone_hz: float = 1000.0,
    offset_s: float = 0.0,
    *,
    marks: Sequence[int] = (30, 90),
    audio_seconds: float | None = None,
) -> Path:
    """Re-encode ``video_in`` with frames ``marks`` turned white and a click track at their times.

    The audio track is silent except for a ``CLICK_SECONDS`` burst of ``tone_hz`` at the display time
    of every marked frame. ``offset_s`` > 0 starts the audio track that much after the first video
    frame; < 0 starts it before (the video is delayed instead). Either way the clicks stay on their
    frames, so an output in sync shows each click on a white frame. ``audio_seconds`` defaults to the
    video's length (measured from the audio track's own start).
    """
    fps = _rate_of(video_in)
    frames = (_marked(frame, index in marks) for index, frame in enumerate(_frames(video_in)))
    video_start = max(0.0, -offset_s)
    audio_start = max(0.0, offset_s)
    length = audio_seconds if audio_seconds is not None else _frame_count(video_in) / fps - offset_s
    audio = np.zeros(round(length * _AUDIO_RATE), np.float32)
    burst = np.sin(2 * np.pi * tone_hz * np.arange(round(CLICK_SECONDS * _AUDIO_RATE)) / _AUDIO_RATE)
    for index in marks:
        at = round((index / fps + video_start - audio_start) * _AUDIO_RATE)
        if 0 <= at < len(audio):
            audio[at : at + len(burst)] = 0.8 * burst[: len(audio) - at]
    _encode(out, fps, frames, video_start=video_start, audio=audio, audio_start=audio_start)
    return Path(out)


def with_damaged_audio(video_in: Path, out: Path, packets: Iterable[int] = (20, 21, 60)) -> Path:
    """``with_audio(video_in)`` whose audio packets number ``packets`` are overwritten with garbage.

    The AAC decoder refuses those packets; the clicks (at frames 30 and 90) stay on their frames.
    """
    clean = Path(out).with_name(Path(out).stem + ".clean" + Path(out).suffix)
    with_audio(video_in, clean)
    _damage(clean, out, "audio", set(packets))
    clean.unlink()
    return Path(out)


def with_damaged_video(video_in: Path, out: Path, packets: Iterable[int] = (40,)) -> Path:
    """A copy of ``video_in`` whose video packets number ``packets`` are overwritten with garbage."""
    _damage(video_in, out, "video", set(packets))
    return Path(out)


def looped_video(src: Path, out: Path, seconds: float) -> Path:
    """A ``seconds``-long video that plays the short clip ``src`` forwards, backwards, forwards, …"""
    return ping_pong(src, Path(out), seconds)


def video_with_fps(src: Path, out: Path, fps: Fraction) -> Path:
    """The frames of ``src``, re-encoded to play at exactly ``fps`` (e.g. 24000/1001, 25, 30000/1001)."""
    _encode(out, Fraction(fps), _frames(src))
    return Path(out)


def still_video(image: Path | np.ndarray, out: Path, seconds: float, fps: Fraction = Fraction(25)) -> Path:
    """A video that shows one RGB image (a path or an array) for ``seconds``; odd sizes are cropped even."""
    if isinstance(image, np.ndarray):
        rgb = image
    else:
        rgb = cv2.cvtColor(cv2.imread(str(image), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])
    _encode(out, Fraction(fps), (rgb for _ in range(round(seconds * fps))))
    return Path(out)


def empty_video(out: Path) -> Path:
    """A well-formed MP4 written without a single frame (reading it, FFmpeg drops the empty track)."""
    with av.open(str(out), "w", format="mp4") as container:
        container.add_stream("libx264", rate=25)
        container.start_encoding()  # writes the header although no frame follows
    return Path(out)


def corrupt_file(out: Path, size: int = 64 * 1024) -> Path:
    """``size`` bytes of (seeded) noise, whatever the extension says."""
    Path(out).write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    return Path(out)


def truncated_copy(src: Path, out: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of the bytes of ``src``: a download cut short."""
    data = Path(src).read_bytes()
    Path(out).write_bytes(data[: int(len(data) * fraction)])
    return Path(out)


def rotated_copy(src: Path, out: Path, degrees: int) -> Path:
    """A copy of the MP4 ``src`` whose display matrix turns it ``degrees`` (90, 180, -90), as phones do.

    The track header's matrix is patched (the samples are untouched), so the decoded frames equal the
    source's. ``degrees`` is FFmpeg's display rotation, counter-clockwise: a portrait phone video
    reads -90 and is shown turned a quarter clockwise.
    """
    matrices = {90: (0, -1, 1, 0), -90: (0, 1, -1, 0), 180: (-1, 0, 0, -1)}
    a, b, c, d = (65536 * value for value in matrices[degrees])
    data = bytearray(Path(src).read_bytes())
    tkhd = data.index(b"tkhd")
    assert data[tkhd + 4] == 0, "only version-0 track headers are patched"
    matrix = tkhd + 4 + 4 + 20 + 8 + 8  # version/flags, times/id/duration, reserved, layer..volume
    data[matrix : matrix + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 1 << 30)
    Path(out).write_bytes(bytes(data))
    return Path(out)


def jpeg_with_orientation(out: Path, rgb: np.ndarray, orientation: int) -> Path:
    """A JPEG of ``rgb`` as stored, with an EXIF block whose Orientation tag is ``orientation``."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 274, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    data = encoded.tobytes()
    Path(out).write_bytes(data[:2] + segment + data[2:])  # right after the start-of-image marker
    return Path(out)


def audio_only(out: Path, seconds: float = 1.0) -> Path:
    """An MP4 (M4A) with an AAC track and no video."""
    with av.open(str(out), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=_AUDIO_RATE)
        stream.codec_context.layout = "mono"
        _mux_audio(container, stream, np.zeros(round(seconds * _AUDIO_RATE), np.float32), 0.0)
    return Path(out)


def mjpeg_avi(out: Path, frames: int = 5) -> Path:
    """An AVI of Motion-JPEG frames: a container we take holding a codec we do not."""
    with av.open(str(out), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return Path(out)


def is_marked(frame: np.ndarray) -> bool:
    """Whether a decoded RGB frame is one of ``with_audio``'s white marks."""
    return float(frame.mean()) > MARK_BRIGHTNESS


def click_onsets(samples: np.ndarray, rate: int, threshold: float = 0.2) -> list[float]:
    """Start times in seconds of the clicks in a mono float signal (gaps under 0.1 s join a click)."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return []
    starts = loud[np.concatenate([[True], np.diff(loud) > 0.1 * rate])]
    return [index / rate for index in starts]


# --------------------------------------------------------------------------------------------------


def _rate_of(path: Path) -> Fraction:
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        assert rate is not None
        return Fraction(rate)


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def _decoded_frames(path: Path) -> Iterator[av.VideoFrame]:
    with av.open(str(path)) as container:
        yield from container.decode(video=0)


def _frames(path: Path) -> Iterator[np.ndarray]:
    for frame in _decoded_frames(path):
        yield frame.to_ndarray(format="rgb24")


def _marked(frame: np.ndarray, mark: bool) -> np.ndarray:
    return np.full_like(frame, 255) if mark else frame


def _encode(
    out: Path,
    fps: Fraction,
    frames: Iterable[np.ndarray | av.VideoFrame],
    *,
    video_start: float = 0.0,
    audio: np.ndarray | None = None,
    audio_start: float = 0.0,
) -> None:
    """Encode frames (H.264, fast) and optionally a mono float audio track, each from its start time."""
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"})
        video.codec_context.time_base = 1 / fps
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=_AUDIO_RATE)
            audio_stream.codec_context.layout = "mono"
        first_pts = round(video_start * fps)
        for index, image in enumerate(frames):
            frame = (
                image
                if isinstance(image, av.VideoFrame)
                else av.VideoFrame.from_ndarray(image, format="rgb24")
            )
            if index == 0:
                video.width, video.height = frame.width, frame.height
            frame.pts = first_pts + index
            # Decoded frames carry their source's time base, against which PyAV would rescale pts.
            frame.time_base = video.codec_context.time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio_stream is not None and audio is not None:
            _mux_audio(container, audio_stream, audio, audio_start)


def _mux_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray, start: float
) -> None:
    first = round(start * _AUDIO_RATE)
    for at in range(0, len(audio), 1024):
        frame = av.AudioFrame.from_ndarray(
            audio[None, at : at + 1024].astype(np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = _AUDIO_RATE
        frame.pts = first + at
        frame.time_base = Fraction(1, _AUDIO_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _damage(src: Path, out: Path, kind: str, numbers: set[int]) -> None:
    """Stream-copy ``src``, replacing the payload of the ``kind`` packets numbered ``numbers``."""
    if Path(src).resolve() == Path(out).resolve():
        raise ValueError("damage a copy, not the source")
    rng = np.random.default_rng(1)
    with av.open(str(src)) as source, av.open(str(out), "w", format=_format_of(out)) as target:
        copies = {stream.index: target.add_stream_from_template(stream) for stream in source.streams}
        seen = {stream.index: 0 for stream in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue  # the demuxer's end-of-stream marker
            index = packet.stream.index
            number = seen[index]
            seen[index] += 1
            if packet.stream.type == kind and number in numbers:
                garbage = av.Packet(rng.integers(0, 256, max(packet.size, 16), np.uint8).tobytes())
                garbage.pts, garbage.dts, garbage.time_base = packet.pts, packet.dts, packet.time_base
                garbage.is_keyframe = packet.is_keyframe
                packet = garbage
            packet.stream = copies[index]
            target.mux(packet)


def _format_of(path: Path) -> str:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}.get(Path(path).suffix, "mp4")


def bogus_duration_video(src: Path, out: Path) -> Path:
    """A copy of ``src`` whose stream claims to last about one frame (pts rescaled to almost nothing
    against a finer time base), as some muxers write: its average rate is absurd."""
    fps = _rate_of(src)
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.codec_context.time_base = 1 / fps
        for index, frame in enumerate(_decoded_frames(src)):
            if index == 0:
                video.width, video.height = frame.width, frame.height
            frame.pts = index  # in the source's 1/30000 time base: rescaled to ~0 by the muxer
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return Path(out)
