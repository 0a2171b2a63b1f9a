"""``stillmotion serve``: run the HTTP API with its render workers (see docs/API.md)."""

from __future__ import annotations

from pathlib import Path

import click

from stillmotion.cli.errors import fail


@click.command()
@click.option("--host", default=None, help="Address to listen on.  [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port to listen on.  [default: 8000]")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Job database, artifacts and work files.  [default: ./stillmotion-data]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Render worker processes.  [default: one per core but one, at least 1]",
)
@click.option(
    "--public-base-url",
    default=None,
    help="Base of the absolute URLs handed out (behind a proxy).  [default: the request's]",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="Host, address or CIDR network that input URLs and webhooks may reach although it is "
    "private (repeatable), e.g. 127.0.0.1 for local testing.",
)
@click.option(
    "--retention",
    "retention_s",
    type=float,
    default=None,
    help="Seconds a finished request and its output are kept.  [default: 3600]",
)
@click.option(
    "--sync-timeout",
    "sync_timeout_s",
    type=float,
    default=None,
    help="Seconds POST /v1 waits for the video before answering 504.  [default: 300]",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    workers: int | None,
    public_base_url: str | None,
    allow_hosts: tuple[str, ...],
    retention_s: float | None,
    sync_timeout_s: float | None,
    log_level: str | None,
) -> None:
    """Serve the HTTP API (the hosted P Video Animate contract) and render its requests.

    Every setting can also come from a STILLMOTION_<SETTING> environment variable (docs/API.md);
    options given here win.
    """
    from stillmotion.service.config import ServiceConfig
    from stillmotion.service.server import serve as run

    try:
        config = ServiceConfig.from_env(
            host=host,
            port=port,
            data_dir=data_dir,
            workers=workers,
            public_base_url=public_base_url,
            allow_hosts=",".join(allow_hosts) if allow_hosts else None,
            retention_s=retention_s,
            sync_timeout_s=sync_timeout_s,
            log_level=log_level,
        )
    except ValueError as exc:
        fail(str(exc))
    run(config)
