"""Reading back what the product wrote, with PyAV directly (independent of the code under test)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Probe:
    codec: str
    pix_fmt: str
    width: int
    height: int
    rate: Fraction
    frames: int
    video_seconds: float
    audio_codec: str | None
    audio_start: float | None
    audio_seconds: float | None


def probe(path: Path) -> Probe:
    """Decode every frame and packet: counts and durations as a player would see them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = Fraction(stream.average_rate)
        video_seconds = frames / rate
        audio_codec = audio_start = audio_seconds = None
        if container.streams.audio:
            audio = container.streams.audio[0]
            audio_codec = audio.codec_context.name
    if audio_codec is not None:
        with av.open(str(path)) as container:
            audio = container.streams.audio[0]
            decoded = list(container.decode(audio))
            audio_start = float(decoded[0].pts * audio.time_base)
            samples = sum(f.samples for f in decoded)
            audio_seconds = samples / audio.codec_context.sample_rate
    return Probe(
        stream.codec_context.name,
        stream.codec_context.pix_fmt,
        stream.codec_context.width,
        stream.codec_context.height,
        rate,
        frames,
        float(video_seconds),
        audio_codec,
        audio_start,
        audio_seconds,
    )


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def frame_digest(path: Path) -> str:
    """One hash over every decoded frame's pixels."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            digest.update(frame.to_ndarray(format="rgb24").tobytes())
    return digest.hexdigest()


def audio_samples(path: Path) -> tuple[np.ndarray, int]:
    """The first audio channel as float samples, and the sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    planar = [c if c.ndim == 2 else c[None] for c in chunks]
    return np.concatenate([c[0] for c in planar]).astype(np.float32), rate
