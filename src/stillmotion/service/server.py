"""``stillmotion serve``: the API (uvicorn, in this process) and a supervised pool of render workers.

Workers are separate processes (``python -m stillmotion.service.worker``), so a render never holds the
API's event loop or its GIL. The pool restarts a worker that dies; the workers die with this process
(``worker.die_with_parent``), so a ``kill -9`` of the server leaves no render running unsupervised.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import uvicorn

from stillmotion.service.app import Services, create_app
from stillmotion.service.config import ServiceConfig
from stillmotion.service.worker import CONFIG_ENV

log = logging.getLogger("stillmotion.serve")

_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class WorkerPool:
    """``count`` worker processes, each restarted (with backoff) if it exits while the pool runs."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * config.workers
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, CONFIG_ENV: self.config.to_json()}
        return subprocess.Popen(
            [sys.executable, "-m", "stillmotion.service.worker", "--index", str(index)],
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        for index in range(len(self.processes)):
            self.processes[index] = self._spawn(index)
        # The monitor thread lives as long as the pool: PDEATHSIG of a worker fires when the *thread*
        # that started it ends, so restarts happen on this long-lived thread only.
        self._monitor = threading.Thread(target=self._watch, name="worker-pool", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        restarts = [0] * len(self.processes)
        while not self._stop.wait(1.0):
            for index, process in enumerate(self.processes):
                if process is None or process.poll() is None:
                    continue
                delay = _RESTART_BACKOFF_S[min(restarts[index], len(_RESTART_BACKOFF_S) - 1)]
                log.error("worker %d exited with %s; restarting in %g s", index, process.returncode, delay)
                if self._stop.wait(delay):
                    return
                restarts[index] += 1
                self.processes[index] = self._spawn(index)

    def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join()
        alive = [p for p in self.processes if p is not None and p.poll() is None]
        for process in alive:
            process.terminate()
        deadline = time.monotonic() + grace_s
        for process in alive:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _exit_quietly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def serve(config: ServiceConfig) -> None:
    """Run until interrupted (SIGINT/SIGTERM): uvicorn in the foreground, workers in the background."""
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    services = Services.open(config)  # creates the data folder and the schema before any worker starts
    app = create_app(config, services)
    # uvicorn shuts down gracefully on SIGTERM, then restores the handler it found and raises the
    # signal again: with the default handler that kills this process before ``pool.stop()`` runs, and
    # the workers die by PDEATHSIG with their jobs still leased. Leaving by SystemExit instead lets
    # the workers stop and hand their jobs back.
    signal.signal(signal.SIGTERM, _exit_quietly)
    pool = WorkerPool(config)
    pool.start()
    log.info(
        "stillmotion API on http://%s:%d with %d worker(s); data in %s",
        config.host,
        config.port,
        config.workers,
        config.data_dir,
    )
    try:
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_level=config.log_level,
                access_log=config.access_log,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
        ).run()
    finally:
        pool.stop()
