"""A render worker: a process that claims jobs from the job store and renders each in a child process.

Why a child per job (forked, so the engine's modules are already imported): a cancel or a lost lease
kills the child at once, wherever the render is, with no cooperation from the engine; a crash in native
code (FFmpeg, MediaPipe) fails one request clearly instead of killing the worker; and memory is
returned after every job. The worker itself stays single-threaded (fork-safe): it waits on the child's
pipe with a timeout and, every ``heartbeat_s``, renews its lease, records progress and learns whether
the job was cancelled (the renewal then fails).

``stillmotion serve`` starts the workers as ``python -m stillmotion.service.worker`` processes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from stillmotion.errors import InputError
from stillmotion.inputs import Kind
from stillmotion.params import AnimateParams
from stillmotion.service.auth import KeyStore
from stillmotion.service.config import ServiceConfig
from stillmotion.service.jobs import FailureKind, JobStore, Lease
from stillmotion.service.pricing import cost
from stillmotion.service.sqlite_jobs import SqliteJobStore
from stillmotion.service.storage import ArtifactStore, LocalArtifactStore
from stillmotion.service.sweeper import OUTPUTS

log = logging.getLogger("stillmotion.worker")

CONFIG_ENV = "STILLMOTION_WORKER_CONFIG"
#: Progress messages from the render child at most this often (the parent records them per heartbeat).
_PROGRESS_EVERY_S = 0.1
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG), so no worker or
    render outlives a ``kill -9`` of the server and keeps working on jobs a restarted server re-runs."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def internal_error_message(job_id: str) -> str:
    return f"internal error while rendering; the server log has the details (request {job_id})"


# -- in the render child ------------------------------------------------------------------------------
def _copy_artifact(artifacts: ArtifactStore, name: str, dest: Path) -> Path:
    with artifacts.open(name) as source, dest.open("wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    return dest


def _render(
    job_id: str,
    params_json: dict[str, Any],
    config: ServiceConfig,
    workdir: Path,
    output_name: str,
    conn: multiprocessing.connection.Connection,
) -> None:
    """Fetch, check, render and store one job; report through ``conn`` (never touches the job store)."""
    die_with_parent()
    from stillmotion.engine.media import probe_video
    from stillmotion.inputs import fetch
    from stillmotion.render import render_request

    try:
        params = AnimateParams.model_validate(params_json)
        artifacts = LocalArtifactStore(config.artifacts_dir, config.url_signing_key())
        policy = config.fetch_policy()
        inputs: dict[str, Path] = {}
        sources: tuple[tuple[Kind, str], ...] = (("image", params.image), ("video", params.video))
        for kind, source in sources:
            # Our own upload URLs are read from storage, never fetched over HTTP: the server may sit on
            # an address the fetcher's SSRF guard refuses, and the bytes are here anyway.
            name = artifacts.name_from_url(source)
            if name is not None:
                inputs[kind] = _copy_artifact(artifacts, name, workdir / f"{kind}{Path(name).suffix}")
            else:
                inputs[kind] = fetch(source, kind, workdir, policy)
        seconds = probe_video(inputs["video"]).duration
        conn.send(("estimate", cost(seconds, params.resolution, params.turbo)))

        last = 0.0
        sending = threading.Lock()  # the engine may report from more than one thread; a pipe is not safe

        def on_progress(done: int, total: int) -> None:
            nonlocal last
            with sending:
                now = time.monotonic()
                if now - last >= _PROGRESS_EVERY_S:
                    last = now
                    conn.send(("progress", done / max(total, 1)))

        started = time.monotonic()
        report = render_request(
            params,
            workdir / "output.mp4",
            workdir=workdir,
            policy=policy,
            on_progress=on_progress,
            resolve=lambda _source, kind: inputs[kind],
        )
        render_s = time.monotonic() - started
        artifacts.put(output_name, report.output)
        conn.send(
            (
                "done",
                {
                    "report": report.as_dict(),
                    "render_s": render_s,
                    "fps": float(report.fps),
                    "duration": report.duration,
                },
            )
        )
    except InputError as exc:
        conn.send(("failed", str(exc), FailureKind.INPUT.value))
    except Exception:
        traceback.print_exc()
        conn.send(("failed", internal_error_message(job_id), FailureKind.INTERNAL.value))


# -- in the worker --------------------------------------------------------------------------------------
class Worker:
    def __init__(
        self, config: ServiceConfig, jobs: JobStore, keys: KeyStore, artifacts: ArtifactStore, name: str
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.keys = keys
        self.artifacts = artifacts
        self.name = name
        self.stopping = False
        self._context = multiprocessing.get_context("fork")

    def run(self) -> None:
        parent = os.getppid()
        while not self.stopping:
            if os.getppid() != parent:  # the server is gone (and PDEATHSIG did not reach us)
                log.warning("server process gone; worker %s exits", self.name)
                return
            lease = self.jobs.claim(self.name, self.config.lease_s)
            if lease is None:
                time.sleep(self.config.worker_poll_s)
                continue
            try:
                self.run_job(lease)
            except Exception:  # a store hiccup must not kill the worker; the lease will expire
                log.exception("worker %s: job %s", self.name, lease.job.id)

    def run_job(self, lease: Lease) -> None:
        job = lease.job
        workdir = self.config.work_dir / f"{job.id}_{job.attempts}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        output_name = f"{OUTPUTS}/{job.id}_{job.attempts}.mp4"
        log.info("worker %s: %s attempt %d", self.name, job.id, job.attempts)
        receiver, sender = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=_render,
            args=(job.id, job.params, self.config, workdir, output_name, sender),
            name=f"render-{job.id}",
            daemon=True,
        )
        child.start()
        sender.close()  # so that recv() sees EOF when the child exits
        try:
            try:
                outcome = self._supervise(lease, child, receiver)
            finally:
                if child.is_alive():
                    child.kill()
                child.join()
                receiver.close()
                shutil.rmtree(workdir, ignore_errors=True)
        except (SystemExit, KeyboardInterrupt):
            # Shutting down (SIGTERM): the render is stopped; hand the job back now, so another worker
            # or the next start takes it at once instead of after its lease runs out.
            if self.jobs.release(lease):
                log.info("worker %s: %s handed back to the queue", self.name, job.id)
            raise
        self._finish(lease, outcome, output_name)

    def _supervise(
        self, lease: Lease, child: Any, receiver: multiprocessing.connection.Connection
    ) -> tuple[str, Any] | None:
        """Relay the child's messages until it reports an outcome; ``None`` if the lease is lost."""
        progress = 0.0
        next_beat = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                if not self.jobs.heartbeat(lease, progress, self.config.lease_s):
                    log.info(
                        "worker %s: %s was cancelled or taken over; render stopped", self.name, lease.job.id
                    )
                    child.kill()
                    return None
                next_beat = now + self.config.heartbeat_s
            if not receiver.poll(max(0.0, next_beat - time.monotonic())):
                continue
            try:
                message = receiver.recv()
            except EOFError:  # the child died without a word (killed by the OOM killer, a segfault)
                child.join()
                log.error("render of %s died (exit code %s)", lease.job.id, child.exitcode)
                return ("failed", (internal_error_message(lease.job.id), FailureKind.INTERNAL.value))
            kind = message[0]
            if kind == "progress":
                progress = message[1]
            elif kind == "estimate":
                ok, available = self.keys.raise_hold(lease.job.id, message[1])
                if not ok:
                    child.kill()
                    return (
                        "failed",
                        (
                            f"insufficient credits: this video costs {message[1]:g} credits and "
                            f"the key has {available:g}",
                            FailureKind.INPUT.value,
                        ),
                    )
            else:
                return (kind, message[1:])

    def _finish(self, lease: Lease, outcome: tuple[str, Any] | None, output_name: str) -> None:
        job = lease.job
        if outcome is None:
            self.artifacts.delete(output_name)
            return
        kind, payload = outcome
        if kind == "done":
            (done,) = payload
            report = done["report"]
            params = AnimateParams.model_validate(job.params)
            metrics = {
                "queue_time_s": round((job.started_at or job.created_at) - job.created_at, 3),
                "inference_time_s": round(done["render_s"], 3),
                "frames": report["frames"],
                "fps": round(done["fps"], 6),
                "duration_s": round(done["duration"], 6),
                "width": report["width"],
                "height": report["height"],
                "seed": report["seed"],
                "has_audio": report["has_audio"],
                "cost": cost(done["duration"], params.resolution, params.turbo),
                "attempts": job.attempts,
            }
            finished = self.jobs.complete(lease, {"output": output_name, "metrics": metrics})
            if finished is None:  # cancelled between the last heartbeat and now: the cancel wins
                self.artifacts.delete(output_name)
                return
            self.keys.settle(job.id, metrics["cost"])
            log.info("worker %s: %s COMPLETED in %.1f s", self.name, job.id, done["render_s"])
        else:
            error, failure = payload
            if self.jobs.fail(lease, error, FailureKind(failure)) is not None:
                self.keys.settle(job.id, 0.0)
            self.artifacts.delete(output_name)
            log.info("worker %s: %s FAILED: %s", self.name, job.id, error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stillmotion.service.worker")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    config = ServiceConfig.from_json(os.environ[CONFIG_ENV])
    die_with_parent()
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s worker-{args.index} %(levelname)s %(message)s",
    )
    with contextlib.suppress(OSError):
        os.nice(config.worker_nice)
    # Import the engine once, before any fork, so each render child starts warm.
    import stillmotion.render

    stillmotion.render.preload()

    jobs = SqliteJobStore(config.db_path, retention_s=config.retention_s, max_attempts=config.max_attempts)
    worker = Worker(
        config,
        jobs,
        KeyStore(config.db_path),
        LocalArtifactStore(config.artifacts_dir, config.url_signing_key()),
        name=f"{socket.gethostname()}:{os.getpid()}",
    )

    def stop(_signum: int, _frame: object) -> None:
        # Leave at once: a running render is stopped and its job handed back to the queue
        # (``Worker.run_job``); only a worker killed outright leaves its job to the lease's expiry.
        worker.stopping = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker %s ready", worker.name)
    worker.run()


if __name__ == "__main__":
    main()
