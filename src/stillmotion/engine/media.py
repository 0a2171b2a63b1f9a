"""The engine's media I/O: read the photo, probe and decode the driving video, encode the output.

Frames cross this module's border as RGB ``uint8`` arrays of shape ``(height, width, 3)``. Every
problem with an input file surfaces as ``MediaError`` or ``LimitError`` with a one-line message that
says what was wrong and what is allowed; PyAV and OpenCV exceptions never escape for bad input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import stat
import struct
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.container
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from stillmotion import limits
from stillmotion.engine.native_stderr import quiet_native_stderr
from stillmotion.errors import LimitError, MediaError

log = logging.getLogger(__name__)

IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, TIFF"
VIDEO_FORMATS = "MP4, MOV, WebM, MKV, AVI with H.264, HEVC, VP8/9, AV1, MPEG-4"

# Only these demuxers may parse a driving video, and only local files may be opened: a "video" that
# is really an HLS playlist or a concat script would otherwise make FFmpeg fetch other URLs or files.
_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
_VIDEO_INPUT_OPTIONS = {"format_whitelist": _DEMUXERS, "protocol_whitelist": "file"}
# The audio source is a driving video that probe_video already accepted (or, in tests, a WAV file).
_AUDIO_INPUT_OPTIONS = {"protocol_whitelist": "file"}
_VIDEO_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})

# x264's output depends on its thread count; pinning it keeps the output identical on every machine.
# Two threads match the design machine, where the other core renders.
_X264_THREADS = 2
# Frames waiting for the encoder thread: enough to absorb jitter, small enough to bound memory.
_QUEUE_FRAMES = 4

_AAC_RATES = frozenset(av.Codec("aac", "w").audio_rates or ())
_AAC_FRAME = 1024  # samples per AAC frame
_AAC_FALLBACK_RATE = 48000
_AAC_BITS_PER_CHANNEL = 64_000
# Audio timestamps that disagree with the samples decoded so far by more than this are a real gap
# (a late start, a skipped damaged packet) or overlap, not rounding: 5 ms is below one AAC frame.
_AUDIO_SYNC_TOLERANCE_S = 0.005


# --------------------------------------------------------------------------------------------------
# Shared checks


def _short(value: float) -> str:
    """A limit for a message, to 0.1 and without a needless ``.0``: ``40``, ``8.3``."""
    return f"{value:.1f}".removesuffix(".0")


def _checked_size(path: Path, limit: int) -> int:
    """The size of a regular, non-empty file of at most ``limit`` bytes; checked before any decoding."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path.name}: no such file") from None
    except OSError as exc:
        raise MediaError(f"{path.name}: cannot read the file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise MediaError(f"{path.name}: not a regular file")
    if info.st_size == 0:
        raise MediaError(f"{path.name}: the file is empty")
    if info.st_size > limit:
        raise LimitError(
            f"{path.name}: {info.st_size / limits.MB:.1f} MB, more than the {limit // limits.MB} MB allowed"
        )
    return info.st_size


def _check_pixels(name: str, width: int, height: int, limit: int) -> None:
    """Refuse frames larger than ``limit`` pixels."""
    if width * height > limit:
        raise LimitError(
            f"{name}: {width}x{height} is {width * height / 1e6:.1f} MP, "
            f"more than the {_short(limit / 1e6)} MP allowed"
        )


# --------------------------------------------------------------------------------------------------
# Photos


@dataclass(frozen=True)
class _ImageHeader:
    """What an image file's header says, read without decoding its pixels."""

    width: int
    height: int
    orientation: int = 1
    """EXIF orientation, 1 to 8; 1 (as stored) when the file has none."""


def photo_pixels(photo: Path | np.ndarray) -> np.ndarray:
    """A photo's RGB pixels: ``photo`` itself when a caller has already decoded it with
    ``read_image``, else ``read_image(photo)``."""
    return photo if isinstance(photo, np.ndarray) else read_image(photo)


def read_image(path: Path) -> np.ndarray:
    """Decode a photo into RGB ``uint8`` (H, W, 3), upright as its EXIF orientation says.

    Transparent pixels are composited on white, grey images become RGB, 16-bit images are scaled to
    8 bits. The format is recognised by content, not by extension, and the pixel count is checked
    from the header before the pixels are decoded, so a small file cannot expand into gigabytes.
    """
    path = Path(path)
    _checked_size(path, limits.MAX_IMAGE_BYTES)
    data = path.read_bytes()
    header = _image_header(data)
    if header is None:
        raise MediaError(f"{path.name}: not an image we can read (allowed: {IMAGE_FORMATS})")
    _check_pixels(path.name, header.width, header.height, limits.MAX_IMAGE_PIXELS)
    # IMREAD_UNCHANGED keeps alpha and 16 bits; it ignores EXIF, which _apply_orientation then applies.
    with quiet_native_stderr():  # libpng warns on stderr about harmless colour-profile quirks
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise MediaError(f"{path.name}: the image is corrupt or truncated (allowed: {IMAGE_FORMATS})")
    rgb = _apply_orientation(_to_rgb8(decoded, path.name), header.orientation)
    if min(rgb.shape[:2]) < limits.MIN_IMAGE_SIDE:
        raise LimitError(
            f"{path.name}: {rgb.shape[1]}x{rgb.shape[0]} is too small "
            f"(the shorter side must be at least {limits.MIN_IMAGE_SIDE} px)"
        )
    return rgb


def _image_header(data: bytes) -> _ImageHeader | None:
    """Size and orientation from the header of a PNG, JPEG, WebP, BMP or TIFF; None for anything else."""
    readers = {
        b"\x89PNG\r\n\x1a\n": _png_header,
        b"\xff\xd8": _jpeg_header,
        b"RIFF": _webp_header,
        b"BM": _bmp_header,
        b"II*\x00": _tiff_header,
        b"MM\x00*": _tiff_header,
    }
    for magic, reader in readers.items():
        if data.startswith(magic):
            try:
                header = reader(data)
            except (struct.error, IndexError, ValueError):
                return None  # a header cut short or inconsistent: not a file we can read
            return header if header and header.width > 0 and header.height > 0 else None
    return None


def _png_header(data: bytes) -> _ImageHeader:
    width, height = struct.unpack(">II", data[16:24])
    orientation, pos = 1, 8
    # An eXIf chunk counts only before the image data (PNG 1.5), as decoders read it.
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            break
        if kind == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return _ImageHeader(width, height, orientation)


# JPEG start-of-frame markers; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header(data: bytes) -> _ImageHeader | None:
    orientation, pos = 1, 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header found
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
        elif marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", segment[1:5])
            return _ImageHeader(width, height, orientation)
        pos += 2 + length
    return None


def _webp_header(data: bytes) -> _ImageHeader | None:
    if data[8:12] != b"WEBP":
        return None
    size: tuple[int, int] | None = None
    orientation, pos = 1, 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"VP8X":
            size = (1 + int.from_bytes(chunk[4:7], "little"), 1 + int.from_bytes(chunk[7:10], "little"))
        elif kind == b"VP8 " and size is None:
            width, height = struct.unpack("<HH", chunk[6:10])
            size = (width & 0x3FFF, height & 0x3FFF)
        elif kind == b"VP8L" and size is None:
            (bits,) = struct.unpack("<I", chunk[1:5])
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif kind == b"EXIF":
            orientation = _exif_orientation(chunk.removeprefix(b"Exif\x00\x00"))
        pos += 8 + length + (length & 1)  # chunks are padded to an even size
    return None if size is None else _ImageHeader(size[0], size[1], orientation)


def _bmp_header(data: bytes) -> _ImageHeader:
    (info_size,) = struct.unpack("<I", data[14:18])
    if info_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return _ImageHeader(width, abs(height))  # a negative height means rows stored top-down


def _tiff_header(data: bytes) -> _ImageHeader:
    tags = _tiff_tags(data)
    return _ImageHeader(tags.get(256, 0), tags.get(257, 0), tags.get(274, 1))


def _exif_orientation(exif: bytes) -> int:
    """The Orientation tag of an EXIF block (a TIFF structure); 1 when absent or unreadable."""
    try:
        orientation = _tiff_tags(exif).get(274, 1)
    except (struct.error, IndexError):
        return 1  # a damaged EXIF block does not make the picture unreadable
    return orientation if 1 <= orientation <= 8 else 1


def _tiff_tags(data: bytes) -> dict[int, int]:
    """The SHORT and LONG single values of the first image directory of a TIFF structure."""
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    tags: dict[int, int] = {}
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack(order + "HHI", data[entry : entry + 8])
        if n == 1 and kind == 3:  # SHORT, left-justified in the value field
            (tags[tag],) = struct.unpack(order + "H", data[entry + 8 : entry + 10])
        elif n == 1 and kind == 4:  # LONG
            (tags[tag],) = struct.unpack(order + "I", data[entry + 8 : entry + 12])
    return tags


def _to_rgb8(decoded: np.ndarray, name: str) -> np.ndarray:
    """OpenCV's BGR / BGRA / grey, 8 or 16 bits, as RGB uint8 with transparency composited on white."""
    if decoded.dtype == np.uint16:
        decoded = ((decoded.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise MediaError(f"{name}: {decoded.dtype} pixels are not supported (allowed: 8- or 16-bit images)")
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    colour, alpha = decoded[:, :, :3], decoded[:, :, 3:] if decoded.shape[2] == 4 else None
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if alpha is not None:
        a = alpha.astype(np.uint32)
        colour = ((colour * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(colour[:, :, ::-1])


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn and mirror a stored image upright, as EXIF orientation 1–8 says."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(transforms[orientation](image))


# --------------------------------------------------------------------------------------------------
# Driving videos


@dataclass(frozen=True)
class VideoInfo:
    """What the renderer needs to know about a driving video, as it will be displayed."""

    width: int
    height: int
    fps: Fraction
    """Exact frame rate from the stream: 29.97 stays ``Fraction(30000, 1001)``."""
    frame_count: int
    """From the container, or estimated from its duration × fps when the container lacks it."""
    duration: float
    """``frame_count / fps`` seconds: the length the output must have."""
    has_audio: bool
    size_bytes: int


def probe_video(path: Path) -> VideoInfo:
    """Check a driving video against the formats and limits we take, and describe it.

    Decodes the first frame only, to prove the stream is readable and to learn its display rotation.
    """
    path = Path(path)
    size = _checked_size(path, limits.MAX_VIDEO_BYTES)
    try:
        with _open_video(path) as container:
            stream = _video_stream(container, path.name)
            context = stream.codec_context
            _check_pixels(path.name, context.width, context.height, limits.MAX_VIDEO_PIXELS)
            fps = _frame_rate(stream, path.name)
            first = next(_decoded(container, stream, path.name), None)
            frame_count = _frame_count(path, container, stream, fps)
            has_audio = container.streams.best("audio") is not None
    except av.FFmpegError as exc:
        raise _unreadable(path.name) from exc
    if frame_count == 0:
        raise MediaError(f"{path.name}: the video has no frames")
    if first is None:
        raise _unreadable(path.name)
    width, height = _displayed_size(first)
    duration = float(frame_count / fps)
    if duration > limits.MAX_VIDEO_SECONDS:
        raise LimitError(
            f"{path.name}: {_short(duration)} s long, "
            f"more than the {_short(limits.MAX_VIDEO_SECONDS)} s allowed"
        )
    return VideoInfo(width, height, fps, frame_count, duration, has_audio, size)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """The driving video's frames as RGB uint8 arrays, upright, streamed in constant memory.

    Every frame has the first frame's displayed size. A packet the decoder rejects is skipped; a file
    that breaks off mid-way ends the stream after the last good frame.
    """
    for _, frame in iter_timed_frames(path):
        yield frame


def iter_timed_frames(path: Path, start: float = 0.0) -> Iterator[tuple[float | None, np.ndarray]]:
    """``iter_frames`` with each frame's presentation time in seconds (``None`` where the stream has
    no timestamps), from the first frame at or after ``start``: the decoder seeks to the keyframe
    before it, so the frames from there are exactly those a decode from the beginning gives."""
    path = Path(path)
    _checked_size(path, limits.MAX_VIDEO_BYTES)
    yielded = False
    try:
        with _open_video(path) as container:
            stream = _video_stream(container, path.name)
            stream.thread_type = "AUTO"  # FFmpeg frame + slice threading: decoding keeps up with 4K
            if start > 0 and stream.time_base:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            shape: tuple[int, int, int] | None = None
            for frame in _decoded(container, stream, path.name):
                if start > 0 and (frame.time is None or frame.time < start):
                    continue
                shape = shape or (frame.width, frame.height, _quarter_turns(frame))
                yield frame.time, _to_rgb(frame, *shape)
                yielded = True
    except av.FFmpegError as exc:
        raise _unreadable(path.name) from exc
    if not yielded and start == 0:
        raise MediaError(f"{path.name}: the video has no frames")


def _unreadable(name: str) -> MediaError:
    return MediaError(f"{name}: not a video file we can read (allowed: {VIDEO_FORMATS})")


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r", container_options=_VIDEO_INPUT_OPTIONS, metadata_errors="replace")
    except av.FFmpegError as exc:
        raise _unreadable(path.name) from exc


def _video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    """The main video stream (not a cover picture), if its codec is one we take."""
    if not container.streams:  # e.g. an MP4 written without a single frame: its empty track is dropped
        raise MediaError(f"{name}: the video has no frames")
    stream = container.streams.best("video")
    if stream is None:
        raise MediaError(f"{name}: the file has no video stream (allowed: {VIDEO_FORMATS})")
    codec = stream.codec_context.codec.canonical_name if stream.codec_context else "unknown"
    if codec not in _VIDEO_CODECS:
        raise MediaError(f"{name}: the video codec {codec} is not supported (allowed: {VIDEO_FORMATS})")
    return stream


def _frame_rate(stream: av.VideoStream, name: str) -> Fraction:
    """Frames over duration as the stream states it: exact, and what keeps the audio in sync.

    A stream whose stated duration is wrong gives an average rate far from its nominal rate (seen:
    a 90-frame clip claiming one frame's duration, "2700000/1001 fps"); then the nominal rate wins.
    """
    average, nominal = stream.average_rate, stream.guessed_rate
    rate = average or nominal
    if average and nominal and not 0.5 <= average / nominal <= 2.0:
        rate = nominal
    if not rate or rate <= 0:
        raise MediaError(f"{name}: the video does not say its frame rate")
    return Fraction(rate)


def _frame_count(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream, fps: Fraction
) -> int:
    """The stream's frame count; else its duration × fps; else its packets counted (no decoding)."""
    if stream.frames:
        return stream.frames
    if stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * fps)
    if container.duration:
        return round(Fraction(container.duration, av.time_base) * fps)
    with _open_video(path) as again:  # a fresh pass: the first one already decoded a frame
        counted = _video_stream(again, path.name)
        return sum(1 for packet in again.demux(counted) if packet.size)


def _decoded(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> Iterator[av.VideoFrame]:
    """Decoded frames. A packet the decoder rejects is skipped; a file that breaks off ends the stream."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            log.warning("%s: the file breaks off (%s); using the frames before it", name, exc)
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            log.warning("%s: skipping a damaged video packet (%s)", name, exc)
            continue
        yield from frames


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that make a frame upright (phones store portrait turned)."""
    return round(frame.rotation / 90) % 4


def _displayed_size(frame: av.VideoFrame) -> tuple[int, int]:
    turned = _quarter_turns(frame) % 2 == 1
    return (frame.height, frame.width) if turned else (frame.width, frame.height)


def _to_rgb(frame: av.VideoFrame, width: int, height: int, turns: int) -> np.ndarray:
    """A decoded frame as upright RGB at the stream's first size (a mid-stream size change is scaled)."""
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height, src_color_range=frame.color_range)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


# --------------------------------------------------------------------------------------------------
# Output


class VideoWriter:
    """Encode RGB frames to a browser-playable MP4 (H.264, yuv420p, faststart), optionally with audio.

    Use as a context manager. ``write`` hands frames to an encoder thread through a small bounded queue,
    so rendering and encoding overlap on two cores. The file appears at ``path`` only when the ``with``
    block ends without an exception; otherwise nothing is left behind. Frame *i* is shown at *i* / fps
    exactly. With ``audio_source``, its audio is re-encoded as AAC, starting at the source's first
    video frame and lasting ``duration`` seconds (default: as long as the frames written).
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: Fraction,
        *,
        preset: str = "veryfast",
        crf: int = 18,
        audio_source: Path | None = None,
        duration: float | None = None,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even, positive width and height, not {width}x{height}")
        if fps <= 0:
            raise ValueError(f"the frame rate must be positive, not {fps}")
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.has_audio = False
        self._settings = _EncoderSettings(preset, crf, audio_source, duration)
        self._queue: queue.Queue[av.VideoFrame | None] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._partial: Path | None = None

    def __enter__(self) -> VideoWriter:
        # A hidden file next to the target, so the final os.replace is atomic (same file system). FFmpeg
        # creates it, with the permissions the umask gives (mkstemp's would be owner-only).
        self._partial = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.part")
        try:
            encoder = _Encoder(self._partial, self.width, self.height, self.fps, self._settings)
        except BaseException:
            self._partial.unlink(missing_ok=True)
            raise
        self.has_audio = encoder.has_audio
        self._thread = threading.Thread(target=self._run, args=(encoder,), name="stillmotion-encoder")
        self._thread.daemon = True  # never keep a dying process alive for a half-written video
        self._thread.start()
        return self

    def write(self, frame: np.ndarray) -> None:
        """Queue one RGB uint8 frame of exactly (height, width, 3); the caller may reuse its buffer."""
        if self._thread is None:
            raise RuntimeError("VideoWriter.write outside its with block")
        self._raise_if_failed()
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a ({self.height}, {self.width}, 3) uint8 frame, got {frame.shape} {frame.dtype}"
            )
        self._put(av.VideoFrame.from_ndarray(frame, format="rgb24"))  # copies the pixels

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._thread is not None and self._partial is not None
        done = False
        try:
            if exc_type is None:
                self._put(None)  # end of stream: the thread flushes the encoders and closes the file
                self._thread.join()
                self._raise_if_failed()
                os.replace(self._partial, self.path)
                done = True
        finally:
            if not done:
                self._abandon()

    def _run(self, encoder: _Encoder) -> None:
        """The encoder thread: encode queued frames until the end marker or a stop."""
        try:
            while True:
                frame = self._queue.get()
                if self._stop.is_set():
                    return
                if frame is None:
                    encoder.finish()
                    return
                encoder.encode(frame)
        except BaseException as exc:  # handed over to the caller's thread by _raise_if_failed
            self._error = exc
        finally:
            encoder.close()

    def _put(self, item: av.VideoFrame | None) -> None:
        """Queue an item, waking up now and then so a dead encoder thread cannot block us forever."""
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _abandon(self) -> None:
        """Stop the encoder thread and remove the partial file."""
        assert self._thread is not None and self._partial is not None
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wakes the thread if it waits for a frame
        self._thread.join()
        self._partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class _EncoderSettings:
    preset: str
    crf: int
    audio_source: Path | None
    duration: float | None


class _Encoder:
    """Owns the output container: encodes video frames, pulls the audio along, muxes both interleaved."""

    def __init__(
        self, path: Path, width: int, height: int, fps: Fraction, settings: _EncoderSettings
    ) -> None:
        self._fps = fps
        self._frames = 0
        self._duration = settings.duration
        self._output = av.open(str(path), "w", format="mp4", container_options={"movflags": "+faststart"})
        self._audio: _AudioTrack | None = None
        try:
            self._video = self._add_video(width, height, fps, settings)
            if settings.audio_source is not None:
                self._audio = _AudioTrack.open(settings.audio_source, self._output)
            # Opens the codecs and writes the header now, so bad settings fail in the caller's thread.
            self._output.start_encoding()
        except BaseException:
            self.close()
            raise

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def _add_video(
        self, width: int, height: int, fps: Fraction, settings: _EncoderSettings
    ) -> av.VideoStream:
        stream = self._output.add_stream(
            "libx264",
            rate=fps,
            options={"preset": settings.preset, "crf": str(settings.crf), "threads": str(_X264_THREADS)},
        )
        context = stream.codec_context
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.time_base = 1 / fps  # pts = frame index: the exact rate survives into the file
        # Tag the BT.709 that encode() converts to, so players and our decoder use the same matrix.
        context.colorspace = Colorspace.ITU709
        context.color_primaries = ColorPrimaries.BT709
        context.color_trc = ColorTrc.BT709
        context.color_range = ColorRange.MPEG
        return stream

    def encode(self, frame: av.VideoFrame) -> None:
        """Encode the next frame, then the audio up to the end of that frame's display time."""
        yuv = frame.reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
        )
        yuv.pts = self._frames
        self._frames += 1
        self._output.mux(self._video.encode(yuv))
        if self._audio is not None:
            self._output.mux(self._audio.encode_until(self._audio_end(self._frames / self._fps)))

    def finish(self) -> None:
        """Flush both encoders, end the audio exactly with the video, and close the file."""
        self._output.mux(self._video.encode(None))
        if self._audio is not None:
            self._output.mux(self._audio.finish(self._audio_end(self._frames / self._fps)))
        self._output.close()

    def _audio_end(self, video_time: Fraction) -> float:
        return float(video_time) if self._duration is None else min(float(video_time), self._duration)

    def close(self) -> None:
        """Release everything; best effort, as it also runs after a failure."""
        if self._audio is not None:
            self._audio.close()
        with contextlib.suppress(av.FFmpegError, OSError):
            self._output.close()


class _AudioTrack:
    """The audio of a source file, re-timed onto the output clock and encoded as AAC.

    Output time 0 is the source's first video frame. Decoded audio is placed where its timestamps say:
    a gap (a late start, a damaged packet that was skipped) becomes silence, an overlap (audio that
    starts before the video) is cut. Sample rates AAC takes are kept; others are resampled to 48 kHz.
    """

    def __init__(self, source: av.container.InputContainer, output: av.container.OutputContainer) -> None:
        self._source = source
        stream = source.streams.best("audio")
        assert stream is not None
        video = source.streams.best("video")
        has_start = video is not None and video.start_time is not None and video.time_base is not None
        self._origin = float(video.start_time * video.time_base) if has_start else 0.0
        in_rate = stream.codec_context.sample_rate
        self._rate = in_rate if in_rate in _AAC_RATES else _AAC_FALLBACK_RATE
        self._channels = 1 if stream.codec_context.channels == 1 else 2
        self._layout = "mono" if self._channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self._rate)
        self._tolerance = round(_AUDIO_SYNC_TOLERANCE_S * self._rate)
        self._packets = source.demux(stream)
        self._source_done = False
        # Samples placed but not yet encoded. Silence is kept as a count, so a long gap costs no memory.
        self._chunks: deque[np.ndarray | int] = deque()
        self._queued = 0
        self._encoded = 0
        self.stream = output.add_stream("aac", rate=self._rate)
        context = self.stream.codec_context
        context.layout = self._layout
        context.bit_rate = _AAC_BITS_PER_CHANNEL * self._channels
        context.time_base = Fraction(1, self._rate)

    @classmethod
    def open(cls, path: Path, output: av.container.OutputContainer) -> _AudioTrack | None:
        """The audio track of ``path``; None when it has no audio stream."""
        try:
            source = av.open(
                str(path), "r", container_options=_AUDIO_INPUT_OPTIONS, metadata_errors="replace"
            )
        except av.FFmpegError as exc:
            raise MediaError(f"{Path(path).name}: cannot read the audio (allowed: {VIDEO_FORMATS})") from exc
        if source.streams.best("audio") is None:
            source.close()
            return None
        try:
            return cls(source, output)
        except BaseException:
            source.close()
            raise

    def encode_until(self, seconds: float) -> list[av.Packet]:
        """Encode whole AAC frames of audio up to ``seconds`` of output time."""
        target = round(seconds * self._rate)
        self._fill(target)
        return self._encode(target, final=False)

    def finish(self, seconds: float) -> list[av.Packet]:
        """Encode the rest, silence-padded or cut to exactly ``seconds``, and flush the encoder."""
        target = round(seconds * self._rate)
        self._fill(target)
        return self._encode(target, final=True) + self.stream.encode(None)

    def close(self) -> None:
        self._source.close()

    def _fill(self, target: int) -> None:
        """Decode until ``target`` output samples are placed; silence once the source has run out."""
        while self._encoded + self._queued < target and not self._source_done:
            self._pull()
        if self._source_done:
            self._queue_silence(target - self._encoded - self._queued)

    def _pull(self) -> None:
        """Decode the next source packet onto the timeline; a damaged packet is skipped."""
        try:
            packet = next(self._packets)
        except StopIteration:
            self._end_source()
            return
        except av.FFmpegError as exc:
            log.warning("the audio source breaks off (%s); the rest of the output is silent", exc)
            self._end_source()
            return
        try:
            for frame in packet.decode():
                self._place(frame)
        except (av.FFmpegError, ValueError) as exc:  # the gap it leaves is filled with silence
            log.warning("skipping a damaged audio packet (%s)", exc)

    def _place(self, frame: av.AudioFrame) -> None:
        """Queue a decoded frame where its timestamp says, relative to the first video frame.

        The resampler may hold back a few samples (well under a millisecond), which the tolerance absorbs.
        """
        parts = [converted.to_ndarray() for converted in self._resampler.resample(frame)]
        if not parts:
            return
        samples = np.concatenate(parts, axis=1)
        if frame.time is not None:
            offset = round((frame.time - self._origin) * self._rate) - (self._encoded + self._queued)
            if offset > self._tolerance:
                self._queue_silence(offset)
            elif offset < -self._tolerance:
                samples = samples[:, -offset:]
        self._queue_samples(samples)

    def _end_source(self) -> None:
        self._source_done = True
        for converted in self._resampler.resample(None):
            self._queue_samples(converted.to_ndarray())

    def _queue_samples(self, samples: np.ndarray) -> None:
        if samples.shape[1]:
            self._chunks.append(samples)
            self._queued += samples.shape[1]

    def _queue_silence(self, count: int) -> None:
        if count > 0:
            self._chunks.append(count)
            self._queued += count

    def _take(self, count: int) -> np.ndarray:
        """The next ``count`` queued samples as one (channels, count) array."""
        parts: list[np.ndarray] = []
        while count:
            head = self._chunks.popleft()
            size = head if isinstance(head, int) else head.shape[1]
            used = min(size, count)
            if used < size:  # put the rest back
                self._chunks.appendleft(head - used if isinstance(head, int) else head[:, used:])
            parts.append(
                np.zeros((self._channels, used), np.float32) if isinstance(head, int) else head[:, :used]
            )
            count -= used
            self._queued -= used
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def _encode(self, target: int, *, final: bool) -> list[av.Packet]:
        """Encode queued samples up to ``target`` in AAC frames; the last may be short when ``final``."""
        packets: list[av.Packet] = []
        while True:
            count = min(_AAC_FRAME, target - self._encoded, self._queued)
            if count <= 0 or (count < _AAC_FRAME and not final):
                return packets
            frame = av.AudioFrame.from_ndarray(self._take(count), format="fltp", layout=self._layout)
            frame.sample_rate = self._rate
            frame.pts = self._encoded
            frame.time_base = Fraction(1, self._rate)
            self._encoded += count
            packets.extend(self.stream.encode(frame))
