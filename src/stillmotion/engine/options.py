"""The engine's rendering options and its report: plain data, free of any HTTP or CLI concern."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class RenderOptions:
    """How to render. ``stillmotion.params.AnimateParams.render_options`` builds it from a request."""

    resolution: int = 720
    """Shorter output side in pixels (720 or 1080)."""
    turbo: bool = False
    """Trade a little quality for speed: coarser warp grid, faster encoder preset."""
    audio: bool = True
    """Mux the driving video's audio, when it has any."""
    target_fps: int | None = None
    """Output frame rate; ``None`` keeps the driving video's exact rate."""
    seed: int = 42
    """Seed of every random choice, so equal inputs give equal frames."""


@dataclass
class RenderReport:
    """What was rendered, and how long each stage took."""

    output: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    has_audio: bool
    seed: int
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output),
            "width": self.width,
            "height": self.height,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "frames": self.frames,
            "duration": round(self.duration, 6),
            "has_audio": self.has_audio,
            "seed": self.seed,
            "seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
        }
