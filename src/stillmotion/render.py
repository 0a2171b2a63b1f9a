"""One request, rendered: fetch the inputs, check the photo, resolve the seed, run the engine.

The command line and the service's worker both render through ``render_request``, so a request
behaves the same wherever it runs. The engine itself never sees a URL.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from stillmotion.engine.options import RenderReport
from stillmotion.inputs import FetchPolicy, Kind, fetch
from stillmotion.params import SEED_MAX, AnimateParams

#: Returns a local file for sources the caller can resolve itself (e.g. the server's own uploads),
#: or ``None`` to fetch the source normally.
SourceResolver = Callable[[str, Kind], Path | None]


def resolve_seed(seed: int) -> int:
    """The seed to use: ``-1`` draws one at random (and the report then names it)."""
    return secrets.randbelow(SEED_MAX + 1) if seed == -1 else seed


def preload() -> None:
    """Import what rendering needs (the engine, and MediaPipe with it) now instead of on the first
    request. A worker calls it before forking its render children, so none of them pays for it; it
    starts no threads, so forking after it stays safe."""
    import stillmotion.engine.pipeline  # noqa: F401
    from stillmotion.engine.mediapipe_loader import mediapipe

    mediapipe()


def render_request(
    params: AnimateParams,
    output: Path,
    *,
    workdir: Path,
    policy: FetchPolicy,
    on_progress: Callable[[int, int], None] | None = None,
    resolve: SourceResolver | None = None,
) -> RenderReport:
    """Render ``params`` into ``output``; inputs are fetched into ``workdir`` (which the caller owns).

    Raises ``InputError`` subclasses for anything the requester must fix, ``SafetyBlocked`` among them.
    """
    from stillmotion.engine.media import read_image
    from stillmotion.engine.pipeline import animate  # heavy (MediaPipe): only when rendering

    def local(source: str, kind: Kind) -> Path:
        found = resolve(source, kind) if resolve is not None else None
        return found if found is not None else fetch(source, kind, workdir, policy)

    image = local(params.image, "image")
    video = local(params.video, "video")
    # Decoded once: the safety checker and the engine judge and animate the same pixels.
    photo = read_image(image)
    if not params.disable_safety_checker:
        from stillmotion.safety import check_photo

        check_photo(photo)
    return animate(photo, video, output, params.render_options(resolve_seed(params.seed)), on_progress)
