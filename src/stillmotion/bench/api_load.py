"""Status-poll latency of a live server while it renders (``stillmotion bench --api``).

Starts a real ``stillmotion serve`` on loopback in a temporary data directory, queues enough renders of
the bundled sample to keep its worker busy for the whole measurement, and runs ``pollers`` concurrent
clients (httpx, asyncio, one client and connection each) that each poll a status URL at the SDK's
default cadence (one request per ``interval_s``, 1 s), as that many waiting SDK users would. Reports
latency percentiles of the polls (each poller's first request, which also opens its connection, is
left out), the request rate, and how much of the window a render was really running. The pollers run
on the same 2 cores as the server and its render, so the numbers include that contention.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from stillmotion.samples import sample_image, sample_video
from stillmotion.service.process import ServerProcess

MODEL = "p-video-animate"
#: Seconds one render of the 4-second sample takes at most here, to size the queue of renders.
_RENDER_S_LOW = 3.0


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def _poll(
    client: httpx.AsyncClient,
    url: str,
    until: float,
    interval_s: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    async with client:
        await asyncio.sleep(random.uniform(0, interval_s))  # spread the pollers over the interval
        first = True
        while (start := time.perf_counter()) < until:
            try:
                response = await client.get(url)
                if response.status_code != 200:
                    errors.append(response.status_code)
            except httpx.HTTPError:
                errors.append(0)
            elapsed = time.perf_counter() - start
            if not first:  # the first poll also opens the connection: a one-off, not a poll's latency
                latencies.append(elapsed)
            first = False
            await asyncio.sleep(max(0.0, interval_s - elapsed))


async def _watch(client: httpx.AsyncClient, urls: list[str], until: float, samples: list[bool]) -> None:
    """Whether some render is running, sampled every 0.25 s (for ``rendering_fraction``)."""
    while time.perf_counter() < until:
        states = [(await client.get(url)).json().get("status") for url in urls]
        samples.append("PROCESSING" in states)
        await asyncio.sleep(0.25)


async def _load(
    base: str, key: str, status_urls: list[str], pollers: int, seconds: float, interval_s: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    rendering: list[bool] = []
    # A client per poller, as every waiting SDK user has its own: one shared pool of hundreds of
    # connections would make httpcore's pool bookkeeping, not the server, the thing measured. Made
    # before the clock starts (verify=False: plain HTTP on loopback, no CA bundle to load 200 times).
    clients = [
        httpx.AsyncClient(base_url=base, headers={"x-api-key": key}, timeout=30, verify=False)
        for _ in range(pollers)
    ]
    async with httpx.AsyncClient(base_url=base, headers={"x-api-key": key}, timeout=30) as client:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(
            _watch(client, status_urls, until, rendering),
            *(
                _poll(clients[i], status_urls[i % len(status_urls)], until, interval_s, latencies, errors)
                for i in range(pollers)
            ),
        )
        wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rate_per_s": round(len(latencies) / wall, 1),
        "latency_ms": {
            name: round(_percentile(ordered, q) * 1000, 2)
            for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))
        },
        "rendering_fraction": round(sum(rendering) / max(len(rendering), 1), 3),
    }


def run(pollers: int = 200, seconds: float = 10.0, interval_s: float = 1.0) -> dict[str, Any]:
    """Measure; returns ``{"pollers", "seconds", "interval_s", "requests", "errors", "rate_per_s",
    "latency_ms": {"p50", "p90", "p99", "max"}, "rendering_fraction", ...}``."""
    from stillmotion.service.auth import KeyStore

    with tempfile.TemporaryDirectory(prefix="stillmotion-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        _, key = KeyStore(data_dir / "stillmotion.db").create("bench", 1e9)
        with (
            ServerProcess(data_dir, args=("--workers", "1", "--log-level", "warning")) as server,
            httpx.Client(base_url=server.base_url, headers={"x-api-key": key}, timeout=60) as http,
        ):

            def upload(path: Path, content_type: str) -> str:
                answer = http.post(
                    "/v2/uploads", content=path.read_bytes(), headers={"content-type": content_type}
                )
                answer.raise_for_status()
                return str(answer.json()["url"])

            body = {
                "image": upload(sample_image(), "image/png"),
                "video": upload(sample_video(), "video/mp4"),
                "disable_safety_checker": True,
            }
            jobs = [
                http.post(f"/v2/{MODEL}", json=body).json()
                for _ in range(math.ceil(seconds / _RENDER_S_LOW) + 2)
            ]
            urls = [job["status_url"] for job in jobs]
            deadline = time.monotonic() + 60
            while http.get(urls[0]).json()["status"] == "QUEUED" and time.monotonic() < deadline:
                time.sleep(0.1)
            results = asyncio.run(_load(server.base_url, key, urls, pollers, seconds, interval_s))
            completed = sum(http.get(url).json()["status"] == "COMPLETED" for url in urls)
            for job in jobs:
                http.post(job["cancel_url"])
    return {
        "pollers": pollers,
        "seconds": seconds,
        "interval_s": interval_s,
        "cpu_count": os.cpu_count(),
        **results,
        "renders_completed": completed,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
