"""Settings of the HTTP service, from command-line options and ``STILLMOTION_*`` environment variables.

One frozen dataclass is passed to the API process and (as JSON) to every worker process, so all of
them agree on where the data lives and how long things last. ``docs/API.md`` lists every setting.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillmotion.limits import MAX_VIDEO_BYTES

if TYPE_CHECKING:
    from stillmotion.inputs import FetchPolicy

ENV_PREFIX = "STILLMOTION_"


def default_workers() -> int:
    """One render worker per core, leaving one core to the API (and at least one worker)."""
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the API, the workers, the sweeper and the webhook dispatcher need to know."""

    data_dir: Path = Path("stillmotion-data")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=default_workers)
    public_base_url: str | None = None
    """Base of the absolute URLs we hand out (behind a proxy); by default the request's own base URL."""

    sync_timeout_s: float = 300.0
    """How long ``POST /v1/...`` waits for the video before answering 504 (the job goes on)."""
    retention_s: float = 3600.0
    """How long a finished request, its result and its output file stay available."""
    upload_ttl_s: float = 3600.0
    """How long an uploaded file (``POST /v2/uploads``) and its URL stay valid."""
    upload_max_bytes: int = MAX_VIDEO_BYTES

    lease_s: float = 15.0
    """A worker's hold on a job; a job whose lease runs out (its worker died) is run again."""
    heartbeat_s: float = 0.5
    """How often a worker renews its lease, records progress and looks for a cancel."""
    max_attempts: int = 3
    """Runs of one job before a job whose worker keeps dying is failed."""
    worker_poll_s: float = 0.5
    worker_nice: int = 10
    """Renders run at a lower CPU priority so the API stays responsive on a small machine."""
    sweep_interval_s: float = 15.0

    default_hold_seconds: float = 10.0
    """Seconds of video a submit reserves credits for when the driving video's length is not known
    yet (a URL); the worker tops the hold up once it has the video."""

    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 5.0
    """First retry delay of a webhook; each next one doubles (5 s, 10 s, 20 s ... about 21 min in all)."""
    webhook_timeout_s: float = 10.0
    webhook_poll_s: float = 1.0

    allow_hosts: frozenset[str] = frozenset()
    """Hosts that input URLs and webhooks may reach although they are private (e.g. ``127.0.0.1``)."""
    fetch_timeout_s: float = 60.0
    access_log: bool = False
    log_level: str = "info"

    # -- derived paths -------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.data_dir / "stillmotion.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "url-signing.key"

    def fetch_policy(self) -> FetchPolicy:
        """The input fetcher's policy (imported lazily: only the submit check and the worker need it)."""
        from stillmotion.inputs import FetchPolicy

        return FetchPolicy(
            allow_hosts=self.allow_hosts, allow_local_paths=False, timeout_s=self.fetch_timeout_s
        )

    def url_signing_key(self) -> bytes:
        """The secret that signs artifact URLs, created once per data directory (mode 0600) so that
        URLs survive a restart and every process of this service agrees on it."""
        path = self.secret_path
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process of this service won the race; read its key below
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["data_dir"] = str(self.data_dir)
        data["allow_hosts"] = sorted(self.allow_hosts)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        return cls._build(json.loads(text))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServiceConfig:
        """Defaults, then ``STILLMOTION_<FIELD>`` variables, then ``overrides`` that are not None."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._build(values)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> ServiceConfig:
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(values) - set(types)
        if unknown:
            raise ValueError(f"unknown service settings: {', '.join(sorted(unknown))}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            converted[name] = _convert(name, types[name], value)
        config = cls(**converted)
        if config.public_base_url is not None:
            config = dataclasses.replace(config, public_base_url=config.public_base_url.rstrip("/"))
        return config


def _convert(name: str, annotation: Any, value: Any) -> Any:
    """Turn an environment string (or a JSON value) into the field's type, naming the setting on error."""
    kind = str(annotation)
    try:
        if kind.startswith("Path"):
            return Path(value)
        if kind.startswith("frozenset"):
            items = value.split(",") if isinstance(value, str) else value
            return frozenset(item.strip() for item in items if item.strip())
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str | None":
            return None if value is None else str(value)
        return value
    except (TypeError, ValueError):
        raise ValueError(f"setting {name} ({ENV_PREFIX}{name.upper()}): cannot use {value!r}") from None
