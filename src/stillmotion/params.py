"""The request parameters of an animation: one typed model for the HTTP API, the CLI and the SDK.

Field names, types, defaults and allowed values are those of the hosted "P Video Animate" API that
stillmotion re-creates (``shared/seed``), so a payload written for that API validates here unchanged.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stillmotion.engine.options import RenderOptions

SEED_MIN = -1
SEED_MAX = 999_999_999_999_999

Resolution = Literal["720p", "1080p"]
TargetFps = Literal["original", "24", "48"]


class AnimateParams(BaseModel):
    """What a user asks for: the photo, the driving video, and how to render.

    Strict: ``"true"`` is not a boolean and ``"42"`` is not a seed; unknown fields are refused, so a
    misspelt option is an error instead of a silently ignored default.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    image: Annotated[
        str,
        Field(
            min_length=1,
            description="Reference still of the subject to animate: an http(s) URL, "
            "a data URI, raw base64 or (CLI) a local path. Use a front-facing, well-lit portrait.",
        ),
    ]
    video: Annotated[
        str,
        Field(
            min_length=1,
            description="Driving video whose motion and audio animate the photo: an "
            "http(s) URL, a data URI, raw base64 or (CLI) a local path.",
        ),
    ]
    resolution: Resolution = Field(
        "720p", description="Output resolution: the shorter side is 720 or 1080 px, the photo's aspect kept."
    )
    turbo: bool = Field(False, description="Faster rendering at slightly lower quality (draft previews).")
    save_audio: bool = Field(True, description="Keep the driving video's audio in the output.")
    ignore_audio: bool = Field(False, description="Ignore the driving audio: a silent, motion-only output.")
    target_fps: TargetFps = Field(
        "original", description="Output frame rate: the driving video's own, 24, or 48 (interpolated)."
    )
    instruction_prompt: str = Field(
        "",
        max_length=2000,
        description="Optional text guiding the animation (recorded; the warp-based "
        "engine does not interpret it).",
    )
    seed: int = Field(
        42,
        ge=SEED_MIN,
        le=SEED_MAX,
        description="Random seed for reproducibility; -1 draws one and reports it.",
    )
    disable_safety_checker: bool = Field(False, description="Skip the content safety check of the photo.")

    def render_options(self, seed: int) -> RenderOptions:
        """The engine's view of these parameters, with ``seed`` already resolved (never -1)."""
        return RenderOptions(
            resolution=int(self.resolution.removesuffix("p")),
            turbo=self.turbo,
            audio=self.save_audio and not self.ignore_audio,
            target_fps=None if self.target_fps == "original" else int(self.target_fps),
            seed=seed,
        )


_TYPE_WORDS = {
    "bool_type": "must be a boolean (true or false)",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
}


def _choices(model: type[BaseModel], field: str) -> str | None:
    info = model.model_fields.get(field)
    if info is None or get_origin(info.annotation) is not Literal:
        return None
    return ", ".join(repr(choice) for choice in get_args(info.annotation))


def describe_validation_error(error: ValidationError, model: type[BaseModel] = AnimateParams) -> str:
    """One sentence per problem, naming the field and what is allowed, e.g.
    ``resolution: must be one of '720p', '1080p' (got '4k')``. Shared by the API's 400s, the CLI and
    the SDK, so all three say the same thing; ``model`` is the model that was validated."""
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        kind, got = item["type"], item.get("input")
        if kind == "missing":
            problems.append(f"{field}: is required")
        elif kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            problems.append(f"{field}: is not a known field (allowed: {allowed})")
        elif kind == "literal_error":
            choices = _choices(model, field) or item.get("ctx", {}).get("expected", "")
            problems.append(f"{field}: must be one of {choices} (got {got!r})")
        elif kind in {"greater_than_equal", "less_than_equal"} and field == "seed":
            problems.append(f"{field}: must be an integer from {SEED_MIN} to {SEED_MAX} (got {got!r})")
        elif kind in _TYPE_WORDS:
            problems.append(f"{field}: {_TYPE_WORDS[kind]} (got {got!r})")
        else:
            problems.append(f"{field}: {item['msg'].lower()} (got {got!r})")
    return "; ".join(problems)
