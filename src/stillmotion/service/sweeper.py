"""Housekeeping, run periodically in the API process: retention, dead workers, orphans, credit holds."""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from stillmotion.service.auth import KeyStore
from stillmotion.service.jobs import JobStore
from stillmotion.service.pricing import charge
from stillmotion.service.storage import ArtifactStore

log = logging.getLogger(__name__)

OUTPUTS = "outputs"
UPLOADS = "uploads"
#: A hold with no job after this long was left by a submit that died between hold and record.
_ORPHAN_HOLD_S = 300.0
#: Scratch of one attempt: ``work/<request id>_<attempt>`` (``worker.py``).
_ATTEMPT_DIR = re.compile(r"^(?P<id>.+)_(?P<attempt>\d+)$")
#: Other scratch (submit-time probes, uploads being received) older than this was abandoned.
_STALE_SCRATCH_S = 3600.0


@dataclass(frozen=True)
class Sweeper:
    jobs: JobStore
    keys: KeyStore
    artifacts: ArtifactStore
    work_dir: Path
    retention_s: float
    upload_ttl_s: float
    lease_s: float

    def sweep(self, now: float) -> dict[str, int]:
        """One pass; returns counts for the log. Every step is idempotent, so passes may overlap a crash."""
        report = self.jobs.sweep(now)
        for job in report.failed:
            log.warning("request %s failed: %s", job.id, job.error)
            self.keys.settle(job.id, 0.0)
        for job in report.expired:
            if job.result:
                self.artifacts.delete(job.result["output"])
        # Files no record points to any more: uploads past their URL's life, and outputs of attempts that
        # were abandoned (an output is at most retention + one lease older than its record's expiry).
        uploads = self.artifacts.purge(UPLOADS, now - self.upload_ttl_s)
        orphans = self.artifacts.purge(OUTPUTS, now - self.retention_s - self.lease_s - 60.0)
        settled = 0
        for request_id, created_at in self.keys.open_holds():
            job = self.jobs.get(request_id)
            if job is not None and job.status.terminal:
                self.keys.settle(request_id, charge(job))
                settled += 1
            elif job is None and created_at < now - _ORPHAN_HOLD_S:
                self.keys.settle(request_id, 0.0)
                settled += 1
        return {
            "failed": len(report.failed),
            "expired": len(report.expired),
            "uploads": uploads,
            "orphan_outputs": orphans,
            "holds_settled": settled,
            "scratch": self._sweep_scratch(),
        }

    def _sweep_scratch(self) -> int:
        """Remove work folders no worker uses any more (left by a killed worker or render)."""
        removed = 0
        if not self.work_dir.is_dir():
            return 0
        for entry in self.work_dir.iterdir():
            match = _ATTEMPT_DIR.match(entry.name) if entry.is_dir() else None
            if match:
                job = self.jobs.get(match["id"])
                stale = job is None or job.status.terminal or job.attempts != int(match["attempt"])
            else:
                try:
                    stale = entry.stat().st_mtime < time.time() - _STALE_SCRATCH_S
                except FileNotFoundError:
                    continue
            if stale:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        return removed
