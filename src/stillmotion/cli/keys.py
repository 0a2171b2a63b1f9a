"""``stillmotion keys``: API keys of a server's data directory (create, list, credit, revoke).

Every subcommand prints its result on the last line of stdout alone (the new key, the new balance, the
revoked id), so scripts can take it with ``tail -n1``. Works while the server runs (SQLite WAL).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stillmotion.cli.errors import fail

if TYPE_CHECKING:
    from stillmotion.service.auth import ApiKey, KeyStore

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory.  [default: $STILLMOTION_DATA_DIR or ./stillmotion-data]",
)


def _store(data_dir: Path | None) -> KeyStore:
    from stillmotion.service.auth import KeyStore
    from stillmotion.service.config import ServiceConfig

    return KeyStore(ServiceConfig.from_env(data_dir=data_dir).db_path)


def _find(store: KeyStore, ref: str) -> ApiKey:
    key = store.find(ref)
    if key is None:
        fail(f"no single key matches {ref!r}: give its id (key_...), the key, or a longer prefix")
    return key


def _split(values: tuple[str, ...]) -> list[str] | None:
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    return items or None


@click.group()
def keys() -> None:
    """Manage the API keys of a server."""


@keys.command()
@_data_dir
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--credits",
    "credit",
    type=float,
    default=0.0,
    show_default=True,
    help="Starting balance (1 credit = 1 s of 720p output; see docs/API.md).",
)
@click.option(
    "--models", multiple=True, help="Models the key may use (repeat or comma-separate).  [default: all]"
)
@click.option(
    "--scopes", multiple=True, help="Of submit, read, upload (repeat or comma-separate).  [default: all]"
)
@click.option("--rate-limit", default=None, help="Submits and uploads allowed, e.g. 30/min, 5/s, 1000/h.")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=None, help="Unfinished requests allowed at once."
)
def create(
    data_dir: Path | None,
    name: str,
    credit: float,
    models: tuple[str, ...],
    scopes: tuple[str, ...],
    rate_limit: str | None,
    concurrency: int | None,
) -> None:
    """Create a key; prints its webhook secret, then the key alone on the last line (shown only once)."""
    from stillmotion.service.auth import RateLimit

    try:
        limit = RateLimit.parse(rate_limit) if rate_limit else None
        key, token = _store(data_dir).create(
            name,
            credit,
            models=_split(models),
            scopes=_split(scopes),
            rate_limit=limit,
            concurrency=concurrency,
        )
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"id: {key.id}  name: {key.name}  credits: {key.credits:g}", err=True)
    click.echo(f"webhook secret: {key.webhook_secret}")
    click.echo(token)


@keys.command("list")
@_data_dir
def list_keys(data_dir: Path | None) -> None:
    """List the keys (a prefix of each, never the key)."""
    rows = [("ID", "NAME", "PREFIX", "CREDITS", "HELD", "MODELS", "SCOPES", "RATE", "CONCURRENCY", "STATE")]
    for key, held in _store(data_dir).list():
        rows.append(
            (
                key.id,
                key.name,
                key.prefix + "…",
                f"{key.credits:g}",
                f"{held:g}",
                ",".join(key.models) if key.models else "*",
                ",".join(sorted(key.scopes)),
                str(key.rate_limit or "-"),
                str(key.concurrency or "-"),
                "revoked" if key.revoked_at else "active",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@keys.command()
@_data_dir
@click.argument("key_ref", metavar="KEY")
@click.argument("amount", type=float)
def credit(data_dir: Path | None, key_ref: str, amount: float) -> None:
    """Add AMOUNT credits to KEY (id, key or prefix; negative to take some away); prints the balance."""
    store = _store(data_dir)
    key = store.add_credits(_find(store, key_ref).id, amount)
    click.echo(f"{key.credits:g}")


@keys.command()
@_data_dir
@click.argument("key_ref", metavar="KEY")
def revoke(data_dir: Path | None, key_ref: str) -> None:
    """Revoke KEY (id, key or prefix) at once; prints its id."""
    store = _store(data_dir)
    click.echo(store.revoke(_find(store, key_ref).id).id)


@keys.command("webhook-secret")
@_data_dir
@click.argument("key_ref", metavar="KEY")
def webhook_secret(data_dir: Path | None, key_ref: str) -> None:
    """Print the secret that signs KEY's webhooks (Standard Webhooks, whsec_...)."""
    click.echo(_find(_store(data_dir), key_ref).webhook_secret)
