"""The input fetcher against a real HTTP(S) server on 127.0.0.1 serving the bundled sample files."""

from __future__ import annotations

import base64
import contextlib
import http.server
import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from stillmotion import samples
from stillmotion.errors import InputError, LimitError, MediaError
from stillmotion.inputs import FetchError, FetchPolicy, check_source, fetch, sniff

PNG = samples.sample_image().read_bytes()
MP4 = samples.sample_video().read_bytes()
#: The test server is on loopback, which is refused by default; most tests allow it explicitly.
LOCAL = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}))


class _Server(http.server.ThreadingHTTPServer):
    """Serves ``_Handler``'s routes; ``hosts`` records the Host header of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hosts: list[str] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /astronaut.png, /carphone.mp4, /redirect?to=URL, /html, /declared-huge, /endless,
    /slow, /drip, /missing."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers["Host"])
        with contextlib.suppress(OSError):  # the client hung up early, as the guards make it do
            self._route(urllib.parse.urlsplit(self.path))

    def _route(self, url: urllib.parse.SplitResult) -> None:
        if url.path == "/astronaut.png":
            self._send(PNG, "image/png")
        elif url.path == "/carphone.mp4":
            self._send(MP4, "video/mp4")
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", urllib.parse.parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/html":  # lies about its type: the bytes decide
            self._send(b"<!doctype html><html><body>not a photo</body></html>", "image/png")
        elif url.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif url.path == "/endless":  # no Content-Length: only counting while streaming can stop it
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(PNG[:1024])
            for _ in range(1024):  # at most 64 MB, far beyond any cap a test sets
                self.wfile.write(b"\0" * 65536)
        elif url.path == "/slow":
            time.sleep(2.0)
            self._send(PNG, "image/png")
        elif url.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            for i in range(40):
                self.wfile.write(PNG[i * 64 : (i + 1) * 64])
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(b'{"error": "no such file"}', "application/json", 404)


def _serve(context: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[str]]]:
    server = _Server()
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", server.hosts
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[str]]]:
    """(``host:port``, the Host headers received)."""
    yield from _serve()


@pytest.fixture()
def base(server: tuple[str, list[str]]) -> str:
    return f"http://{server[0]}"


def _left(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# --- HTTP ---------------------------------------------------------------------------------------


def test_fetches_a_png_and_an_mp4(base: str, tmp_path: Path) -> None:
    image = fetch(f"{base}/astronaut.png", "image", tmp_path, LOCAL)
    video = fetch(f"{base}/carphone.mp4", "video", tmp_path, LOCAL)
    assert image == tmp_path / "image.png" and image.read_bytes() == PNG
    assert video == tmp_path / "video.mp4" and video.read_bytes() == MP4
    assert _left(tmp_path) == ["image.png", "video.mp4"]


def test_loopback_is_refused_by_default(base: str, tmp_path: Path) -> None:
    with pytest.raises(
        FetchError,
        match=r"^image: http://127\.0\.0\.1:\d+/astronaut\.png resolves to a "
        r"loopback address \(127\.0\.0\.1\), which is refused; allowed: public http\(s\) ",
    ):
        fetch(f"{base}/astronaut.png", "image", tmp_path)
    assert _left(tmp_path) == []


def test_a_name_resolving_to_loopback_is_refused_unless_allow_listed(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    port = server[0].rsplit(":", 1)[1]
    url = f"http://localhost:{port}/astronaut.png"
    with pytest.raises(FetchError, match=r"resolves to a loopback address"):
        fetch(url, "image", tmp_path)
    check_source(url, "image")  # a name is only resolved when fetching, never at submit time
    # Allowed by name: connected to the vetted address, with the Host header still naming the host.
    path = fetch(url, "image", tmp_path, FetchPolicy(allow_hosts=frozenset({"LOCALHOST"})))
    assert path.read_bytes() == PNG
    assert server[1][-1] == f"localhost:{port}"


def test_allow_list_takes_networks(base: str, tmp_path: Path) -> None:
    policy = FetchPolicy(allow_hosts=frozenset({"127.0.0.0/8"}))
    assert fetch(f"{base}/astronaut.png", "image", tmp_path, policy).read_bytes() == PNG


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://10.0.0.5/a.png", "a private address"),
        ("http://[::1]/a.png", "a loopback address"),
        ("http://127.0.0.1:{port}/astronaut.png", "a loopback address"),  # a real file, by address
    ],
)
def test_redirects_to_refused_addresses_are_refused(
    server: tuple[str, list[str]], tmp_path: Path, target: str, why: str
) -> None:
    # The origin is allowed by name only, so where it redirects must pass on its own.
    port = server[0].rsplit(":", 1)[1]
    target = target.format(port=port)
    url = f"http://localhost:{port}/redirect?to={urllib.parse.quote(target)}"
    policy = FetchPolicy(allow_hosts=frozenset({"localhost"}))
    with pytest.raises(
        FetchError,
        match=rf"^image: {re.escape(target)} \(redirected from {re.escape(url)}\) "
        rf"resolves to {why}",
    ):
        fetch(url, "image", tmp_path, policy)
    assert _left(tmp_path) == []


def test_redirects_are_followed_and_counted(base: str, tmp_path: Path) -> None:
    hop = f"{base}/astronaut.png"
    for _ in range(3):
        hop = f"{base}/redirect?to={urllib.parse.quote(hop)}"
    assert fetch(hop, "image", tmp_path, LOCAL).read_bytes() == PNG
    with pytest.raises(FetchError, match=r"redirected more than 2 times"):
        fetch(hop, "image", tmp_path, FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_redirects=2))


def test_a_body_past_the_cap_is_abandoned_while_streaming(base: str, tmp_path: Path) -> None:
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_image_bytes=256 * 1024)
    started = time.monotonic()
    with pytest.raises(LimitError, match=r"^image: .*/endless is larger than the 256 KB limit$"):
        fetch(f"{base}/endless", "image", tmp_path, policy)
    assert time.monotonic() - started < 5
    with pytest.raises(LimitError, match=r"larger than the 256 KB limit \(9\.54e\+05 MB\)"):
        fetch(f"{base}/declared-huge", "image", tmp_path, policy)
    with pytest.raises(LimitError, match=r"^video: .* is larger than the 100 KB limit \(\d+ KB\)"):
        fetch(
            f"{base}/carphone.mp4",
            "video",
            tmp_path,
            FetchPolicy(allow_hosts=LOCAL.allow_hosts, max_video_bytes=100 * 1024),
        )
    assert _left(tmp_path) == []


def test_a_server_that_does_not_answer_times_out(base: str, tmp_path: Path) -> None:
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, timeout_s=0.3)
    with pytest.raises(FetchError, match=r"^image: .*/slow did not answer within 0\.3 s$"):
        fetch(f"{base}/slow", "image", tmp_path, policy)
    assert _left(tmp_path) == []


def test_a_server_that_drips_hits_the_overall_deadline(base: str, tmp_path: Path) -> None:
    policy = FetchPolicy(allow_hosts=LOCAL.allow_hosts, timeout_s=2.0, total_timeout_s=0.5)
    with pytest.raises(FetchError, match=r"took longer than 0\.5 s to download"):
        fetch(f"{base}/drip", "image", tmp_path, policy)
    assert _left(tmp_path) == []


def test_content_is_judged_by_its_bytes_not_its_declared_type(base: str, tmp_path: Path) -> None:
    with pytest.raises(
        MediaError,
        match=r"^image: .*/html is not a recognised image or video \(declared "
        r"image/png\), not an image; allowed formats: PNG, JPEG, WebP, BMP, TIFF$",
    ):
        fetch(f"{base}/html", "image", tmp_path, LOCAL)
    with pytest.raises(MediaError, match=r"^video: .*/astronaut\.png is an image \(PNG\), not a video"):
        fetch(f"{base}/astronaut.png", "video", tmp_path, LOCAL)
    assert _left(tmp_path) == []


def test_http_errors_are_reported(base: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"^image: .*/missing answered HTTP 404 Not Found$"):
        fetch(f"{base}/missing", "image", tmp_path, LOCAL)


def test_an_unreachable_host_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"could not connect to 127\.0\.0\.1"):
        fetch("http://127.0.0.1:1/a.png", "image", tmp_path, LOCAL)


# --- TLS: the vetted address is dialled, the certificate still checked against the host name ------


def _certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a self-signed certificate of ``name``."""
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("certified", ["localhost", "elsewhere.example"])
def test_https_keeps_sni_and_certificate_checks(tmp_path: Path, certified: str) -> None:
    server_context, client_context = _certificate(tmp_path, certified)
    served = _serve(server_context)
    address, hosts = next(served)
    try:
        url = f"https://localhost:{address.rsplit(':', 1)[1]}/astronaut.png"
        policy = FetchPolicy(allow_hosts=frozenset({"localhost"}), verify=client_context)
        if certified == "localhost":
            assert fetch(url, "image", tmp_path / "out", policy).read_bytes() == PNG
            assert hosts[-1] == f"localhost:{address.rsplit(':', 1)[1]}"
        else:
            with pytest.raises(FetchError, match=r"could not connect|could not be fetched"):
                fetch(url, "image", tmp_path / "out", policy)
    finally:
        served.close()


# --- inline data and local files ----------------------------------------------------------------


def test_data_uri_and_raw_base64(tmp_path: Path) -> None:
    encoded = base64.b64encode(PNG).decode()
    assert fetch(f"data:image/png;base64,{encoded}", "image", tmp_path).read_bytes() == PNG
    # Line-wrapped and URL-safe, unpadded base64 are accepted, as browsers accept them.
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert fetch(wrapped, "image", tmp_path / "a").read_bytes() == PNG
    urlsafe = base64.urlsafe_b64encode(MP4).decode().rstrip("=")
    assert fetch(urlsafe, "video", tmp_path / "b").read_bytes() == MP4
    # RFC 2397 without ";base64": percent-encoded octets.
    assert fetch(f"data:,{urllib.parse.quote_from_bytes(PNG)}", "image", tmp_path / "c").read_bytes() == PNG
    check_source(f"data:image/png;base64,{encoded}", "image")
    check_source(urlsafe, "video")


def test_inline_data_is_capped_and_sniffed(tmp_path: Path) -> None:
    encoded = base64.b64encode(PNG).decode()
    small = FetchPolicy(max_image_bytes=1000)
    for call in (check_source, lambda s, k, p: fetch(s, k, tmp_path, p)):
        with pytest.raises(LimitError, match=r"^image: the data URI is larger than the 1000 bytes limit"):
            call(f"data:image/png;base64,{encoded}", "image", small)
        with pytest.raises(MediaError, match=r"^video: the base64 data is an image \(PNG\), not a video"):
            call(encoded, "video", None)
        with pytest.raises(FetchError, match=r"^image: the data URI is not valid base64"):
            call("data:image/png;base64,iVBOR*w0KGgo=", "image", None)
        with pytest.raises(FetchError, match=r"^image: the data URI has no ','"):
            call("data:image/png;base64", "image", None)
    assert _left(tmp_path) == []


def test_local_paths_only_when_allowed(tmp_path: Path) -> None:
    photo = samples.sample_image()
    with pytest.raises(
        FetchError,
        match=r"is not an http\(s\) URL, a data URI or base64; allowed: public "
        r"http\(s\) URLs, data URIs, base64$",
    ):
        check_source(str(photo), "image")
    allowed = FetchPolicy(allow_local_paths=True)
    check_source(str(photo), "image", allowed)
    assert fetch(str(photo), "image", tmp_path, allowed) == photo.resolve()
    with pytest.raises(FetchError, match=r"^image: no such file: /nonexistent/x\.png; .*local file paths$"):
        check_source("/nonexistent/x.png", "image", allowed)
    with pytest.raises(MediaError, match=r"^image: .*carphone_pristine\.mp4 is a video \(MP4\), not an im"):
        check_source(str(samples.sample_video()), "image", allowed)


# --- submit-time checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.5/a.png", "a private address (10.0.0.5)"),
        ("http://192.168.1.1/a.png", "a private address"),
        ("http://127.0.0.1/a.png", "a loopback address"),
        ("http://127.1/a.png", "a loopback address (127.0.0.1)"),
        ("http://0x7f000001/a.png", "a loopback address (127.0.0.1)"),
        ("http://[::1]:8080/a.png", "a loopback address (::1)"),
        ("http://[::ffff:10.1.2.3]/a.png", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "a cloud metadata address"),
        ("http://[fd12:3456::1]/", "a private (unique local) address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://100.64.0.1/", "a shared (CGNAT) address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://0.0.0.0/", "an unspecified address"),
    ],
)
def test_literal_refused_addresses_fail_at_submit(url: str, why: str) -> None:
    with pytest.raises(
        FetchError,
        match=rf"^image: .* resolves to {re.escape(why)}.*, which is refused; "
        r"allowed: public http\(s\) URLs, data URIs, base64$",
    ):
        check_source(url, "image")


def test_the_message_of_the_brief() -> None:
    with pytest.raises(InputError) as caught:
        check_source("http://10.0.0.5/a.png", "image")
    assert str(caught.value) == (
        "image: http://10.0.0.5/a.png resolves to a private address (10.0.0.5), "
        "which is refused; allowed: public http(s) URLs, data URIs, base64"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("file:///etc/passwd", r"uses the scheme 'file', which is refused"),
        ("ftp://example.com/a.png", r"uses the scheme 'ftp', which is refused"),
        ("gopher://example.com/", r"uses the scheme 'gopher', which is refused"),
        ("http://metadata.google.internal/computeMetadata/v1/", r"names a cloud metadata host"),
        ("http://exa mple.com/a.png", r"has no valid host and port"),
        ("http:///a.png", r"has no valid host and port"),
        ("photo.png", r"is not an http\(s\) URL, a data URI or base64"),
    ],
)
def test_bad_sources_fail_at_submit(source: str, message: str) -> None:
    with pytest.raises(FetchError, match=rf"^video: .*{message}"):
        check_source(source, "video")


def test_public_urls_pass_submit_checks_without_network() -> None:
    check_source("https://segmind-resources.s3.amazonaws.com/input/pva-image-subject-14997.jpg", "image")
    check_source("http://8.8.8.8/a.mp4", "video")
    check_source("http://[2606:4700::1111]/a.mp4", "video")


def test_credentials_and_inline_data_stay_out_of_messages() -> None:
    with pytest.raises(FetchError) as caught:
        check_source("http://user:secret@10.0.0.5/a.png", "image")
    assert "secret" not in str(caught.value)
    with pytest.raises(MediaError) as inline:
        check_source("data:image/png;base64," + base64.b64encode(b"x" * 10_000).decode(), "image")
    assert len(str(inline.value)) < 200


def test_sniff_recognises_the_accepted_formats() -> None:
    found = {
        name: sniff(head)
        for name, head in {
            "png": PNG[:16],
            "mp4": MP4[:16],
            "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01",
            "webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
            "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81",
        }.items()
    }
    assert {name: (f.kind, f.extension) for name, f in found.items() if f} == {
        "png": ("image", ".png"),
        "mp4": ("video", ".mp4"),
        "jpeg": ("image", ".jpg"),
        "webp": ("image", ".webp"),
        "webm": ("video", ".mkv"),
    }
    assert sniff(b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00") is None  # OpenCV here reads no GIF
