"""The SDK and ``stillmotion animate --server`` against a real ``stillmotion serve`` (rendering the
bundled sample), plus the retry rules against a small scripted HTTP server."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from stillmotion import samples
from stillmotion.client import (
    APIError,
    AuthenticationError,
    BadRequest,
    Client,
    InferenceFailed,
    InferenceTimeout,
    NotFound,
    RateLimited,
)
from stillmotion.errors import StillmotionError
from stillmotion.inputs import sniff
from stillmotion.params import AnimateParams
from stillmotion.service.process import ServerProcess, free_port

from cli_support import CliRun, run_cli

# --- the real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a ``stillmotion serve`` in a fresh data folder."""
    data = tmp_path_factory.mktemp("service")
    created = run_cli("keys", "create", "--data-dir", data, "--name", "t", "--credits", "1000")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1].strip()
    server = ServerProcess(data, log_dir=data, args=()).start(timeout=120)
    try:
        yield server.base_url, key
    finally:
        server.stop()


@pytest.fixture()
def client(service: tuple[str, str]) -> Iterator[Client]:
    with Client(service[0], service[1], timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def sources(service: tuple[str, str]) -> dict[str, str]:
    """The sample photo and video, uploaded once: {"image": url, "video": url}."""
    with Client(*service) as sdk:
        return {"image": sdk.upload(samples.sample_image()), "video": sdk.upload(samples.sample_video())}


def _is_mp4(data: bytes) -> bool:
    found = sniff(data[:16])
    return found is not None and found.name == "MP4"


def _faceless_png() -> str:
    """A data URI of a plain grey photo: valid, safe, and without a face to animate."""
    ok, encoded = cv2.imencode(".png", np.full((256, 256, 3), 128, np.uint8))
    assert ok
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode()


def test_submit_wait_events_download(client: Client, sources: dict[str, str], tmp_path: Path) -> None:
    job = client.submit(idempotency_key="sample-1", **sources)
    # The same Idempotency-Key is the same request: a retried submit never renders twice.
    assert client.submit(idempotency_key="sample-1", **sources).request_id == job.request_id
    # A client that stops waiting keeps its request: it can wait again by id.
    with pytest.raises(InferenceTimeout) as timed_out:
        job.wait(timeout=0.01)
    assert timed_out.value.request_id == job.request_id

    events = list(client.events(job.request_id))
    assert events[-1]["status"] == "COMPLETED" and events[-1]["output"]
    progress = [event["progress"] for event in events if "progress" in event]
    assert progress == sorted(progress) and progress[-1] == 1

    seen: list[dict[str, object]] = []
    result = job.wait(timeout=60, on_progress=seen.append)
    assert seen[-1]["status"] == "COMPLETED" and result["output"] == events[-1]["output"]
    metrics = result["metrics"]
    assert metrics["height"] == 720 and metrics["frames"] > 100 and metrics["seed"] == 42

    saved = client.download(result, tmp_path / "out.mp4")
    assert _is_mp4(saved.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_run_sync_returns_the_mp4(client: Client, sources: dict[str, str]) -> None:
    video = client.run_sync(AnimateParams(turbo=True, resolution="720p", **sources))
    assert _is_mp4(video) and len(video) > 10_000


def test_a_failed_request_raises_inference_failed(client: Client, sources: dict[str, str]) -> None:
    with pytest.raises(InferenceFailed) as failed:
        client.run(image=_faceless_png(), video=sources["video"], timeout=120, interval=0.2)
    assert "face" in failed.value.detail
    # FAILED is served with HTTP 422, and is still an answer for status() and result().
    assert client.status(failed.value.request_id)["status"] == "FAILED"
    assert client.result(failed.value.request_id)["error"] == failed.value.detail


def test_cancel_stops_a_request(client: Client, sources: dict[str, str]) -> None:
    job = client.submit(**sources)
    client.cancel(job.request_id)
    with pytest.raises(InferenceFailed, match="cancel"):
        job.wait(timeout=60, interval=0.2)


def test_parameters_are_checked_before_sending_with_the_servers_words(
    client: Client, service: tuple[str, str], sources: dict[str, str]
) -> None:
    body = {**sources, "resolution": "4k"}
    with pytest.raises(BadRequest) as local:
        client.submit(**body)
    answer = httpx.post(f"{service[0]}/v2/p-video-animate", json=body, headers={"x-api-key": service[1]})
    assert answer.status_code == 400 and local.value.status_code == 400
    assert local.value.detail == answer.json()["error"]


def test_errors_are_typed(service: tuple[str, str], client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotFound):
        client.status("no-such-request")
    stranger = Client(service[0], "sm_wrong", max_retries=0)
    with stranger, pytest.raises(AuthenticationError) as denied:
        stranger.status("no-such-request")
    assert denied.value.status_code == 401 and denied.value.detail
    monkeypatch.delenv("STILLMOTION_API_KEY", raising=False)
    with Client(service[0], None, max_retries=0) as anonymous, pytest.raises(AuthenticationError):
        anonymous.result("no-such-request")


def _remote(service: tuple[str, str], key: str | None = None) -> list[str]:
    """``stillmotion animate`` on the test server."""
    return ["animate", "--server", service[0], "--api-key", key or service[1]]


def test_animate_remote_cli(
    service: tuple[str, str], cli: CliRun, photo: Path, driving: Path, tmp_path: Path
) -> None:
    output = tmp_path / "remote.mp4"
    run = cli(*_remote(service), "--image", photo, "--video", driving, "-o", output, "--json", timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    # The same report as a local render's.
    local_keys = ["output", "width", "height", "fps", "frames", "duration", "has_audio", "seed", "seconds"]
    assert list(report) == local_keys
    assert report["output"] == str(output) and report["fps"] == "30000/1001" and report["height"] == 720
    assert _is_mp4(output.read_bytes())


def test_animate_remote_cli_reports_errors_in_one_line(
    service: tuple[str, str], cli: CliRun, photo: Path, driving: Path, tmp_path: Path
) -> None:
    output = tmp_path / "x.mp4"
    run = cli(*_remote(service, "sm_wrong"), "--image", photo, "--video", driving, "-o", output, timeout=120)
    assert run.returncode == 2
    last = run.stderr.splitlines()[-1]  # after the "uploading ..." notes
    assert last == f"stillmotion: error: {service[0]}: HTTP 401: invalid API key"
    assert not output.exists()
    missing = cli(*_remote(service), "--image", "nope.png", "--video", driving, "-o", output, timeout=120)
    assert missing.returncode == 2 and "image: no such file: nope.png" in missing.stderr


# --- retry rules, against a scripted server -----------------------------------------------------


Answer = tuple[int, dict[str, str], object]


class _ScriptedServer(http.server.ThreadingHTTPServer):
    """Answers each request with the next (status, headers, JSON body) of ``script``; records
    (method, path, headers) in ``seen``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.script: list[Answer] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []


class _Scripted(http.server.BaseHTTPRequestHandler):
    server: _ScriptedServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        status, headers, body = self.server.script.pop(0)
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture()
def scripted() -> Iterator[_ScriptedServer]:
    server = _ScriptedServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _client(server: _ScriptedServer, **options: float) -> Client:
    return Client(f"http://127.0.0.1:{server.server_address[1]}/v1", "sm_test", backoff_s=0.01, **options)


SUBMITTED = {"request_id": "r1", "status": "QUEUED", "status_url": "u/s", "response_url": "u/r"}
PARAMS = {"image": "https://example.com/a.png", "video": "https://example.com/a.mp4"}


def test_reads_are_retried_on_transient_errors(scripted: _ScriptedServer) -> None:
    scripted.script += [
        (503, {}, {"error": "busy"}),
        (502, {}, {"error": "gateway"}),
        (200, {}, {"status": "PROCESSING", "progress": 0.5}),
    ]
    with _client(scripted) as sdk:
        assert sdk.status("r1")["progress"] == 0.5
    assert [path for _, path, _ in scripted.seen] == ["/v2/requests/r1/status"] * 3


def test_a_submit_is_retried_with_the_same_idempotency_key(scripted: _ScriptedServer) -> None:
    scripted.script += [
        (504, {}, {"error": "timeout"}),
        (429, {"Retry-After": "0"}, {"error": "slow down"}),
        (200, {}, SUBMITTED),
    ]
    with _client(scripted) as sdk:
        assert sdk.submit(**PARAMS).request_id == "r1"
    keys = {headers["Idempotency-Key"] for _, _, headers in scripted.seen}
    assert len(scripted.seen) == 3 and len(keys) == 1


def test_a_sync_run_is_not_repeated_after_a_gateway_error(scripted: _ScriptedServer) -> None:
    scripted.script += [(502, {}, {"error": "bad gateway"})]
    with _client(scripted) as sdk, pytest.raises(APIError) as failed:
        sdk.run_sync(**PARAMS)
    assert failed.value.status_code == 502 and failed.value.detail == "bad gateway"
    assert len(scripted.seen) == 1


def test_rate_limits_surface_with_retry_after(scripted: _ScriptedServer) -> None:
    scripted.script += [(429, {"Retry-After": "0"}, {"error": "too many requests"})] * 2
    with _client(scripted, max_retries=1) as sdk, pytest.raises(RateLimited) as limited:
        sdk.status("r1")
    assert limited.value.retry_after == 0 and limited.value.status_code == 429


def test_the_key_is_not_sent_to_another_origin(scripted: _ScriptedServer, tmp_path: Path) -> None:
    scripted.script += [(200, {}, {"fake": "video"})]
    with Client("http://localhost:9/", "sm_secret") as sdk:  # the output lives on another host
        sdk.download({"output": f"http://127.0.0.1:{scripted.server_address[1]}/o.mp4"}, tmp_path / "o.mp4")
    assert "x-api-key" not in {name.lower() for name in scripted.seen[0][2]}


def test_an_unreachable_server_is_one_clear_error() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", "k", max_retries=1, backoff_s=0.01) as sdk,
        pytest.raises(StillmotionError, match=r"^cannot reach the server at http://127\.0\.0\.1:\d+"),
    ):
        sdk.status("r1")
