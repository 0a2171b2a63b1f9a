"""``stillmotion animate --server URL``: render on a stillmotion server through the SDK.

Local files given as ``--image``/``--video`` are uploaded first (``POST /v2/uploads``); the request is
submitted, followed live (a progress bar on stderr fed by the server-sent events, or by polling when
the stream is unavailable), and its MP4 is downloaded atomically to ``--output``. Ctrl-C cancels the
request on the server, so an abandoned render does not go on using the server's cores and credits.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stillmotion.cli.errors import EXIT_INPUT, EXIT_INTERNAL, fail
from stillmotion.errors import InputError, StillmotionError
from stillmotion.params import AnimateParams

if TYPE_CHECKING:  # the SDK (and httpx) load only when a server is used
    from stillmotion.client import Client
    from stillmotion.inputs import Kind

#: How long the command waits for a request before giving up (it stays on the server: see the id).
WAIT_TIMEOUT_S = 6 * 3600.0


class _Progress:
    """A tqdm bar on stderr in percent, its label following the request's state."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=100,
            unit="%",
            desc="submitted",
            file=sys.stderr,
            mininterval=0.25,
            dynamic_ncols=True,
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
        )

    def __call__(self, status: dict[str, Any]) -> None:
        state = str(status.get("status", "")).lower()
        position = status.get("queue_position")
        self._bar.set_description_str(
            f"queued (#{position})" if position else state or "waiting", refresh=False
        )
        self._bar.update(round(100 * float(status.get("progress") or 0.0)) - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _upload_local_files(client: Client, params: AnimateParams, note: Callable[[str], None]) -> AnimateParams:
    """``params`` with each local file among the sources replaced by the URL of its upload."""
    from stillmotion.inputs import FetchPolicy, check_source

    # The same checks the server makes, with local paths allowed: a mistyped path is reported here,
    # naming the field, instead of reaching the server as a string that is no URL.
    policy = FetchPolicy(allow_local_paths=True, allow_hosts=frozenset({"0.0.0.0/0", "::/0"}))
    changes: dict[str, str] = {}
    kinds: tuple[Kind, ...] = ("image", "video")
    for kind in kinds:
        source: str = getattr(params, kind)
        if source.lower().startswith(("http://", "https://")):
            continue  # the server fetches URLs itself, under its own address policy
        check_source(source, kind, policy)
        path = Path(source).expanduser()
        if path.is_file():
            note(f"uploading {path} ...")
            changes[kind] = client.upload(path)
    return params.model_copy(update=changes) if changes else params


def _follow(client: Client, request_id: str, progress: _Progress) -> dict[str, Any]:
    """Follow the request to its end; return its result body (raises ``InferenceFailed``)."""
    from stillmotion.client import APIError, InferenceFailed

    try:
        last: dict[str, Any] = {}
        for last in client.events(request_id):
            progress(last)
        if last.get("status") == "FAILED":
            raise InferenceFailed(request_id, str(last.get("error") or "no reason given"), last)
        if last.get("status") == "COMPLETED":
            # The stream ends with the result body; an older server may end on the status alone.
            return last if "output" in last else client.result(request_id)
    except InferenceFailed:
        raise
    except APIError as error:
        if error.status_code != 404:
            raise
        # No event route (an older server): poll instead.
    except StillmotionError:
        pass  # the stream kept breaking off (a proxy that cuts or buffers it): poll instead
    return client.wait(request_id, timeout=WAIT_TIMEOUT_S, on_progress=progress)


def _report(result: dict[str, Any], output: Path, started: float) -> dict[str, object]:
    """The same keys as a local render's ``RenderReport.as_dict()``."""
    metrics = result.get("metrics") or {}
    fps = Fraction(metrics.get("fps", 0.0)).limit_denominator(1001)  # 29.97... → 30000/1001
    return {
        "output": str(output),
        "width": metrics.get("width"),
        "height": metrics.get("height"),
        "fps": f"{fps.numerator}/{fps.denominator}",
        "frames": metrics.get("frames"),
        "duration": metrics.get("duration_s"),
        "has_audio": metrics.get("has_audio"),
        "seed": metrics.get("seed"),
        "seconds": {
            "queue": metrics.get("queue_time_s"),
            "render": metrics.get("inference_time_s"),
            "total": round(time.monotonic() - started, 4),
        },
    }


def animate_remote(
    params: AnimateParams, *, server: str, api_key: str | None, output: Path, as_json: bool
) -> dict[str, object]:
    """Render ``params`` on ``server`` into ``output``; return the report of a local render.

    Progress goes to stderr (``as_json`` also silences the notes there, so scripts see only the
    bar); errors end the command through ``fail()`` with one line.
    """
    from stillmotion.client import APIError, Client, InferenceFailed, InferenceTimeout

    def note(message: str) -> None:
        if not as_json:
            click.echo(message, err=True)

    started = time.monotonic()
    request_id: str | None = None
    with Client(server, api_key) as client:
        try:
            params = _upload_local_files(client, params, note)
            request_id = client.submit(params).request_id
            progress = _Progress()
            try:
                result = _follow(client, request_id, progress)
            finally:
                progress.close()
            client.download(result, output)
        except KeyboardInterrupt:
            if request_id is not None:
                with contextlib.suppress(StillmotionError):
                    client.cancel(request_id)
                    note(f"cancelled request {request_id} on the server")
            raise
        except InferenceFailed as error:
            fail(f"the server failed the request {error.request_id}: {error.detail}")
        except InferenceTimeout as error:
            fail(f"{error}", EXIT_INTERNAL)
        except APIError as error:
            status = EXIT_INPUT if 400 <= error.status_code < 500 else EXIT_INTERNAL
            fail(f"{server}: {error}", status)
        except InputError as error:
            fail(str(error))
        except StillmotionError as error:
            fail(str(error), EXIT_INTERNAL)
    return _report(result, output, started)
