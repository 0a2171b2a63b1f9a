"""What a request costs, in credits: the one documented rule (``docs/API.md``).

    cost = output seconds × resolution factor × (0.5 if turbo else 1)

with factor 1 for 720p and 2 for 1080p (about the ratio of pixels rendered and encoded). The output
lasts as long as the driving video. A submit holds the estimated cost; the final charge is the same rule
applied to the rendered duration; a FAILED or cancelled request costs nothing.
"""

from __future__ import annotations

from stillmotion.limits import MAX_VIDEO_SECONDS
from stillmotion.service.jobs import Job, Status

RESOLUTION_FACTOR: dict[str, float] = {"720p": 1.0, "1080p": 2.0}
TURBO_FACTOR = 0.5


def cost(seconds: float, resolution: str, turbo: bool) -> float:
    """Credits for ``seconds`` of output at ``resolution`` ("720p"/"1080p")."""
    seconds = min(max(seconds, 0.0), MAX_VIDEO_SECONDS)
    return round(seconds * RESOLUTION_FACTOR[resolution] * (TURBO_FACTOR if turbo else 1.0), 4)


def charge(job: Job) -> float:
    """What a finished request is charged: its cost when COMPLETED, nothing otherwise."""
    if job.status is Status.COMPLETED and job.result:
        return float(job.result["metrics"]["cost"])
    return 0.0
