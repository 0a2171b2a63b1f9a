"""Fetching the photo and the driving video of a request, with guards on address, size and content.

A source is one of:

* an ``http(s)`` URL, fetched with httpx while streaming;
* a ``data:`` URI (RFC 2397, ``data:[<mediatype>][;base64],<data>``);
* raw base64 (RFC 4648 §4, or its URL-safe alphabet of §5; padding and line breaks optional);
* a local file path, only when the policy allows it (the command line does, the HTTP API does not).

Guards, because a URL chosen by a stranger is fetched from inside our network (server-side request
forgery, OWASP SSRF prevention cheat sheet):

* **Addresses.** Only globally reachable unicast addresses are contacted. Loopback, private
  (RFC 1918, RFC 4193), link-local, shared/CGNAT (RFC 6598), multicast, unspecified, documentation,
  benchmarking and the other special-purpose blocks of RFC 6890 and the IANA registries it set up are
  refused, and so are the cloud metadata endpoints (169.254.169.254, fd00:ec2::254,
  metadata.google.internal). IPv4 addresses embedded in IPv6 ones (IPv4-mapped, NAT64, 6to4, Teredo)
  are judged by the IPv4 address they lead to. The check is made on the addresses *we* resolve, and
  the connection then goes to that vetted address (the URL keeps its host name for the ``Host``
  header, TLS SNI and certificate checks), so a DNS answer that changes between check and connect
  (DNS rebinding) gains nothing. Redirects are followed by hand, each hop checked the same way.
  ``FetchPolicy.allow_hosts`` lets listed host names, addresses or networks through, for local use.
* **Size.** Bodies are counted while streaming and abandoned as soon as they pass
  ``limits.MAX_IMAGE_BYTES`` / ``limits.MAX_VIDEO_BYTES``; a declared ``Content-Length`` above the cap
  is refused before reading.
* **Time.** Connect and read timeouts, and an overall deadline so a server that drips one byte at a
  time cannot hold a worker.
* **Content.** The first bytes must be those of an accepted format (see ``sniff``): the declared
  ``Content-Type`` or data-URI media type alone is not trusted.

Files are written to a temporary name in the destination folder and renamed when complete, so a
failed fetch leaves nothing half-written. Every error is one line naming the field, what was wrong
and what is allowed.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import socket
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from stillmotion import limits
from stillmotion.errors import InputError, LimitError, MediaError

Kind = Literal["image", "video"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How many leading bytes ``sniff`` needs to recognise every accepted format.
SNIFF_BYTES = 16
#: Longest URL accepted (the de-facto limit of browsers and CDNs).
MAX_URL_LENGTH = 8192


class FetchError(InputError):
    """A source that may not or cannot be fetched: a refused scheme or address, a bad URL, an HTTP
    error, a timeout. (Too large a source raises ``LimitError``; wrong content raises ``MediaError``.)"""


@dataclass(frozen=True)
class FetchPolicy:
    """What ``check_source`` and ``fetch`` allow.

    ``allow_hosts`` holds host names (matched exactly, case-insensitively), IP addresses or networks
    in CIDR notation (``"10.0.0.0/8"``) that may be contacted although they are not public: the
    documented setting for fetching from a machine on your own network. The caps default to the
    documented limits; tests lower them.
    """

    allow_hosts: frozenset[str] = frozenset()
    allow_local_paths: bool = False
    #: Connect, read and write timeout of each network operation, in seconds.
    timeout_s: float = 30.0
    #: Deadline of a whole fetch (every redirect hop and the body), in seconds.
    total_timeout_s: float = 600.0
    max_redirects: int = 5
    max_image_bytes: int = limits.MAX_IMAGE_BYTES
    max_video_bytes: int = limits.MAX_VIDEO_BYTES
    #: TLS verification as httpx takes it (True, a CA bundle path, or an ``ssl.SSLContext``).
    verify: ssl.SSLContext | str | bool = field(default=True, compare=False)

    def max_bytes(self, kind: Kind) -> int:
        return self.max_image_bytes if kind == "image" else self.max_video_bytes

    def allows(self, host: str, address: IPAddress | None = None) -> bool:
        """Whether ``host`` (or its resolved ``address``) is on the allow list."""
        for entry in self.allow_hosts:
            entry = entry.strip().lower().rstrip(".")
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if entry == host:
                    return True
                continue
            if address is not None and address in network:
                return True
        return False

    def allowed_sources(self) -> str:
        """The ``allowed: ...`` part of error messages."""
        local = ", local file paths" if self.allow_local_paths else ""
        return f"allowed: public http(s) URLs, data URIs, base64{local}"


# --- content ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sniffed:
    """A format recognised from a file's first bytes."""

    kind: Kind
    name: str
    extension: str
    mime: str


_IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, TIFF"
_VIDEO_FORMATS = "MP4, MOV, WebM, MKV, AVI"
#: QuickTime files that predate the ``ftyp`` box start with one of these top-level atoms.
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def sniff(head: bytes) -> Sniffed | None:
    """Recognise an accepted format from its magic bytes (at least ``SNIFF_BYTES`` of them).

    Images are those OpenCV decodes here (GIF is not among them); videos are the containers PyAV
    demuxes that cameras and editors write. Signatures: PNG (ISO 15948 §5.2), JPEG SOI marker, RIFF
    ``WEBP`` / ``AVI `` form types, BMP ``BM``, TIFF byte-order marks, ISO BMFF ``ftyp`` box
    (ISO/IEC 14496-12), Matroska/WebM EBML header.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "PNG", ".png", "image/png")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "JPEG", ".jpg", "image/jpeg")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "WebP", ".webp", "image/webp")
    if head.startswith(b"BM") and len(head) >= 14:
        return Sniffed("image", "BMP", ".bmp", "image/bmp")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return Sniffed("image", "TIFF", ".tif", "image/tiff")
    if head[4:8] == b"ftyp":
        if head[8:12] == b"qt  ":
            return Sniffed("video", "MOV", ".mov", "video/quicktime")
        return Sniffed("video", "MP4", ".mp4", "video/mp4")
    if head[4:8] in _QUICKTIME_ATOMS:
        return Sniffed("video", "MOV", ".mov", "video/quicktime")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("video", "Matroska/WebM", ".mkv", "video/x-matroska")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed("video", "AVI", ".avi", "video/x-msvideo")
    return None


def _article(kind: Kind) -> str:
    return "an" if kind == "image" else "a"


def _expect(kind: Kind, head: bytes, what: str, declared: str | None = None) -> Sniffed:
    """The sniffed format of ``head``, which must be of ``kind``; else a ``MediaError``."""
    found = sniff(head)
    if found is not None and found.kind == kind:
        return found
    formats = _IMAGE_FORMATS if kind == "image" else _VIDEO_FORMATS
    if found is not None:
        got = f"{_article(found.kind)} {found.kind} ({found.name})"
    elif not head:
        got = "empty"
    else:
        got = "not a recognised image or video" + (f" (declared {declared})" if declared else "")
    raise MediaError(f"{kind}: {what} is {got}, not {_article(kind)} {kind}; allowed formats: {formats}")


def _bytes(count: int) -> str:
    if count >= limits.MB:
        return f"{count / limits.MB:.3g} MB"
    return f"{count / 1024:.3g} KB" if count >= 1024 else f"{count} bytes"


def _too_large(kind: Kind, what: str, cap: int, size: int | None = None) -> LimitError:
    amount = f" ({_bytes(size)})" if size is not None else ""
    return LimitError(f"{kind}: {what} is larger than the {_bytes(cap)} limit{amount}")


# --- addresses ----------------------------------------------------------------------------------

#: Cloud instance metadata endpoints (AWS, GCP, Azure, OpenStack; AWS's IPv6 one): refused by name
#: and by address even though some also fall in a block below, because they hand out credentials.
_METADATA_ADDRESSES = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254")))
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})

#: Special-purpose blocks (RFC 6890 and the IANA IPv4/IPv6 Special-Purpose Address Registries), in
#: the words used in error messages. Listed explicitly rather than read from ``ipaddress``'s
#: ``is_private``/``is_global``, whose coverage changed between Python 3.11 patch releases.
_REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), label)
    for net, label in (
        ("0.0.0.0/8", "an unspecified"),  # RFC 791 "this network"
        ("10.0.0.0/8", "a private"),  # RFC 1918
        ("100.64.0.0/10", "a shared (CGNAT)"),  # RFC 6598
        ("127.0.0.0/8", "a loopback"),  # RFC 1122
        ("169.254.0.0/16", "a link-local"),  # RFC 3927
        ("172.16.0.0/12", "a private"),  # RFC 1918
        ("192.0.0.0/24", "a reserved (IETF protocol)"),  # RFC 6890
        ("192.0.2.0/24", "a documentation"),  # RFC 5737
        ("192.88.99.0/24", "a reserved (6to4 relay)"),  # RFC 7526
        ("192.168.0.0/16", "a private"),  # RFC 1918
        ("198.18.0.0/15", "a benchmarking"),  # RFC 2544
        ("198.51.100.0/24", "a documentation"),  # RFC 5737
        ("203.0.113.0/24", "a documentation"),  # RFC 5737
        ("224.0.0.0/4", "a multicast"),  # RFC 5771
        ("240.0.0.0/4", "a reserved"),  # RFC 1112, incl. 255.255.255.255 broadcast
        ("::/128", "an unspecified"),  # RFC 4291
        ("::1/128", "a loopback"),  # RFC 4291
        ("64:ff9b:1::/48", "a private (local NAT64)"),  # RFC 8215
        ("100::/64", "a reserved (discard-only)"),  # RFC 6666
        ("2001::/23", "a reserved (IETF protocol)"),  # RFC 2928
        ("2001:db8::/32", "a documentation"),  # RFC 3849
        ("3fff::/20", "a documentation"),  # RFC 9637
        ("fc00::/7", "a private (unique local)"),  # RFC 4193
        ("fe80::/10", "a link-local"),  # RFC 4291
        ("fec0::/10", "a site-local"),  # RFC 3879
        ("ff00::/8", "a multicast"),  # RFC 4291
    )
)
#: The only IPv6 block IANA allocates for global unicast today (RFC 4291 §2.4); the rest is reserved.
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to, if it embeds one (RFC 4291 mapped, RFC 6052 NAT64,
    RFC 3056 6to4, RFC 4380 Teredo client)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be contacted (``"a private address"``), or None if it is public."""
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)  # the message shows the IPv6 form, which names the IPv4 one
    for network, label in _REFUSED_NETWORKS:
        if address in network:
            return f"{label} address"
    if isinstance(address, ipaddress.IPv6Address) and address not in _IPV6_GLOBAL_UNICAST:
        return "a reserved address"
    return None


def _numeric_host(host: str) -> IPAddress | None:
    """``host`` as an address if it is a numeric one in any form ``getaddrinfo`` takes without DNS
    (including the legacy ``127.1`` and ``0x7f000001`` spellings of inet_aton), else None."""
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%")[0])


def _display(source: str, limit: int = 120) -> str:
    """``source`` as shown in messages: no credentials, no megabytes of inline data."""
    if source.startswith("data:"):
        return f"{source.split(',', 1)[0]},… ({len(source)} characters)"
    parts = urllib.parse.urlsplit(source) if "://" in source else None
    if parts is not None and "@" in parts.netloc:
        source = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return source if len(source) <= limit else source[: limit - 1] + "…"


@dataclass(frozen=True)
class _Target:
    """A parsed http(s) URL: what to request and whom to ask."""

    url: httpx.URL
    host: str  # IDNA (ASCII), lower case, no trailing dot
    port: int


def _parse_url(source: str, kind: str, policy: FetchPolicy, origin: str = "") -> _Target:
    """Parse and check a URL without any network access: scheme, syntax, host, literal addresses."""
    shown = _display(source) + origin
    allowed = policy.allowed_sources()
    if len(source) > MAX_URL_LENGTH:
        raise FetchError(f"{kind}: the URL is longer than {MAX_URL_LENGTH} characters; {allowed}")
    try:
        url = httpx.URL(source)
        port = url.port or (443 if url.scheme == "https" else 80)
        host = url.raw_host.decode("ascii").lower().rstrip(".")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise FetchError(f"{kind}: {shown} is not a valid URL ({exc}); {allowed}") from None
    if url.scheme not in ("http", "https"):
        raise FetchError(f"{kind}: {shown} uses the scheme {url.scheme!r}, which is refused; {allowed}")
    if not host or not re.fullmatch(r"[a-z0-9.\-_]+|[0-9a-f:.]+", host) or not 0 < port < 65536:
        raise FetchError(f"{kind}: {shown} has no valid host and port; {allowed}")
    if host in _METADATA_HOSTS and not policy.allows(host):
        raise FetchError(f"{kind}: {shown} names a cloud metadata host, which is refused; {allowed}")
    literal = _numeric_host(host)
    if literal is not None:
        why = refusal(literal)
        if why is not None and not policy.allows(host, literal):
            raise FetchError(f"{kind}: {shown} resolves to {why} ({literal}), which is refused; {allowed}")
    return _Target(url, host, port)


def _resolve(target: _Target, kind: str, policy: FetchPolicy, shown: str) -> list[IPAddress]:
    """Every address ``target.host`` resolves to, each vetted; refused if any one is refused, since
    we cannot know which one a client library would pick."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"{kind}: {shown}: the host {target.host} could not be resolved ({exc})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address in addresses:
            continue
        why = refusal(address)
        if why is not None and not policy.allows(target.host, address):
            raise FetchError(
                f"{kind}: {shown} resolves to {why} ({address}), which is refused; {policy.allowed_sources()}"
            )
        addresses.append(address)
    return addresses


# --- sources ------------------------------------------------------------------------------------

_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class _Inline:
    data: bytes
    what: str
    declared: str | None = None


def _decode_inline(source: str, kind: Kind, policy: FetchPolicy) -> _Inline | None:
    """The bytes of a data URI or raw base64 source; None if ``source`` is neither."""
    cap = policy.max_bytes(kind)
    if source[:5].lower() == "data:":
        header, comma, payload = source[5:].partition(",")
        if not comma:
            raise FetchError(
                f"{kind}: the data URI has no ',' before its data (RFC 2397: "
                f"data:[<mediatype>][;base64],<data>)"
            )
        mediatype, _, encoding = header.rpartition(";") if ";base64" in header.lower() else (header, "", "")
        if encoding.lower() == "base64":
            data = _b64decode(payload, kind, cap, "the data URI")
        else:  # RFC 2397: without ";base64" the data is percent-encoded octets
            data = urllib.parse.unquote_to_bytes(payload)
            if len(data) > cap:
                raise _too_large(kind, "the data URI", cap, len(data))
        return _Inline(data, "the data URI", mediatype.split(";")[0] or None)
    compact = _WHITESPACE.sub("", source)
    if len(compact) >= SNIFF_BYTES and _BASE64.fullmatch(compact):
        return _Inline(_b64decode(compact, kind, cap, "the base64 data"), "the base64 data")
    return None


def _b64decode(payload: str, kind: Kind, cap: int, what: str) -> bytes:
    compact = _WHITESPACE.sub("", urllib.parse.unquote(payload))
    if len(compact) * 3 // 4 > cap + 2:  # checked before decoding, so an oversized one costs nothing
        raise _too_large(kind, what, cap, len(compact) * 3 // 4)
    # Accept the URL-safe alphabet (RFC 4648 §5) and missing padding (§3.2), which many encoders emit.
    compact = compact.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FetchError(f"{kind}: {what} is not valid base64 (RFC 4648)") from None
    if len(data) > cap:
        raise _too_large(kind, what, cap, len(data))
    return data


def _local_path(source: str, policy: FetchPolicy) -> Path | None:
    """``source`` as an existing local file when local paths are allowed and it names one."""
    if not policy.allow_local_paths or "://" in source or source[:5].lower() == "data:":
        return None
    try:
        path = Path(source).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError):  # a name too long or with a NUL byte is not a path
        return None


def _check_file(path: Path, kind: Kind, policy: FetchPolicy) -> Path:
    """Check a local file's type, size and magic bytes; return its resolved path."""
    if not path.is_file():
        raise FetchError(f"{kind}: {path} is not a regular file")
    size = path.stat().st_size
    cap = policy.max_bytes(kind)
    if size > cap:
        raise _too_large(kind, str(path), cap, size)
    try:
        with path.open("rb") as handle:
            _expect(kind, handle.read(SNIFF_BYTES), str(path))
    except OSError as exc:
        raise FetchError(f"{kind}: {path} cannot be read ({exc.strerror})") from None
    return path.resolve()


def _unknown_source(source: str, kind: Kind, policy: FetchPolicy) -> FetchError:
    if "://" in source or re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\\]", source):
        scheme = source.split(":", 1)[0]
        return FetchError(
            f"{kind}: {_display(source)} uses the scheme {scheme!r}, which is refused; "
            f"{policy.allowed_sources()}"
        )
    if policy.allow_local_paths:
        return FetchError(f"{kind}: no such file: {_display(source)}; {policy.allowed_sources()}")
    return FetchError(
        f"{kind}: {_display(source)} is not an http(s) URL, a data URI or base64; {policy.allowed_sources()}"
    )


def check_source(source: str, kind: Kind, policy: FetchPolicy | None = None) -> None:
    """Cheap checks at submit time, so a bad source is a 400 at once rather than a FAILED job later.

    No network access: URLs are checked for scheme, syntax and literal refused addresses (names are
    resolved only by ``fetch``); inline data is decoded, size-checked and sniffed; a local path (if
    allowed) must be a readable file of the right kind within the size cap.

    Raises ``FetchError``, ``LimitError`` or ``MediaError`` (all ``InputError``).
    """
    policy = policy or FetchPolicy()
    source = source.strip()
    if source[:7].lower() == "http://" or source[:8].lower() == "https://":
        _parse_url(source, kind, policy)
        return
    path = _local_path(source, policy)
    if path is not None:
        _check_file(path, kind, policy)
        return
    inline = _decode_inline(source, kind, policy)
    if inline is None:
        raise _unknown_source(source, kind, policy)
    _expect(kind, inline.data[:SNIFF_BYTES], inline.what, inline.declared)


def fetch(source: str, kind: Kind, dest_dir: Path, policy: FetchPolicy | None = None) -> Path:
    """Bring ``source`` to a local file and return its path.

    URLs and inline data are written into ``dest_dir`` as ``<kind><extension>`` (the extension from
    the sniffed format), atomically. A local path (when allowed) is checked and returned as it is,
    not copied. Raises ``FetchError``, ``LimitError`` or ``MediaError`` (all ``InputError``).
    """
    policy = policy or FetchPolicy()
    source = source.strip()
    if source[:7].lower() == "http://" or source[:8].lower() == "https://":
        return _download(source, kind, Path(dest_dir), policy)
    path = _local_path(source, policy)
    if path is not None:
        return _check_file(path, kind, policy)
    inline = _decode_inline(source, kind, policy)
    if inline is None:
        raise _unknown_source(source, kind, policy)
    return _write_atomically(
        [inline.data], kind, Path(dest_dir), policy.max_bytes(kind), inline.what, inline.declared
    )


def _write_atomically(
    chunks: Iterable[bytes], kind: Kind, dest_dir: Path, cap: int, what: str, declared: str | None = None
) -> Path:
    """Write ``chunks`` to ``dest_dir/<kind><ext>``: sniffed on the first bytes, capped while
    written, renamed into place only when complete (``os.replace`` is atomic on one file system)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=dest_dir, prefix=f".{kind}-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            head = b""
            size = 0
            sniffed: Sniffed | None = None
            for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise _too_large(kind, what, cap)
                if sniffed is None:  # judge the content on its first bytes, before reading on
                    head += chunk
                    if len(head) < SNIFF_BYTES:
                        continue
                    sniffed = _expect(kind, head, what, declared)
                    chunk, head = head, b""
                handle.write(chunk)
            if sniffed is None:  # shorter than SNIFF_BYTES: judge what there is
                sniffed = _expect(kind, head, what, declared)
                handle.write(head)
        final = dest_dir / f"{kind}{sniffed.extension}"
        os.replace(part, final)
        return final
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


# --- HTTP ---------------------------------------------------------------------------------------


def _download(source: str, kind: Kind, dest_dir: Path, policy: FetchPolicy) -> Path:
    """Fetch an http(s) URL, following redirects by hand so every hop is vetted."""
    deadline = time.monotonic() + policy.total_timeout_s
    with httpx.Client(
        timeout=httpx.Timeout(policy.timeout_s),
        follow_redirects=False,  # each hop is checked by us
        trust_env=False,  # a proxy from the environment would make the connection for us, unchecked
        verify=policy.verify,
        headers={"User-Agent": "stillmotion-fetch", "Accept": f"{kind}/*;q=1, */*;q=0.1"},
    ) as client:
        origin = ""  # after a redirect: " (redirected from <the URL asked for>)"
        url = source
        for _hop in range(policy.max_redirects + 1):
            if time.monotonic() > deadline:
                break
            target = _parse_url(url, kind, policy, origin)
            shown = _display(url) + origin
            addresses = _resolve(target, kind, policy, shown)
            with _get(client, target, addresses, kind, shown, policy) as response:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    url = str(target.url.join(location))
                    origin = f" (redirected from {_display(source)})"
                    continue
                if response.status_code != 200:
                    raise FetchError(
                        f"{kind}: {shown} answered HTTP {response.status_code} "
                        f"{response.reason_phrase}".rstrip()
                    )
                cap = policy.max_bytes(kind)
                declared_size = response.headers.get("content-length", "")
                if declared_size.isdigit() and int(declared_size) > cap:
                    raise _too_large(kind, shown, cap, int(declared_size))
                # Chunks as they arrive (no re-chunking), so the deadline is checked on every read.
                chunks = _guarded(response.iter_bytes(), kind, shown, policy, deadline)
                declared = response.headers.get("content-type")
                return _write_atomically(chunks, kind, dest_dir, cap, shown, declared)
    if time.monotonic() > deadline:
        raise FetchError(f"{kind}: {_display(source)} took longer than {policy.total_timeout_s:g} s")
    raise FetchError(f"{kind}: {_display(source)} redirected more than {policy.max_redirects} times")


@contextmanager
def _get(
    client: httpx.Client,
    target: _Target,
    addresses: list[IPAddress],
    kind: str,
    shown: str,
    policy: FetchPolicy,
) -> Iterator[httpx.Response]:
    """GET ``target`` from the first of its vetted ``addresses`` that accepts a connection.

    The request goes to the address itself; the URL's host name is kept for the ``Host`` header and,
    with TLS, for SNI and certificate verification (httpx's ``sni_hostname`` request extension).
    """
    last: Exception | None = None
    for request in pinned_requests(client, "GET", target.url, target.host, addresses):
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last = exc  # try the host's next address
            continue
        except httpx.TimeoutException as exc:
            raise _timeout(exc, kind, shown, policy) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{kind}: {shown} could not be fetched ({exc})") from None
        try:
            yield response
        finally:
            response.close()
        return
    raise FetchError(f"{kind}: {shown}: could not connect to {target.host} ({last})")


def pinned_requests(
    client: httpx.Client | httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    host: str,
    addresses: list[IPAddress],
    **options: Any,
) -> Iterator[httpx.Request]:
    """One request per vetted address of ``host``, to try in turn: each goes to the address itself,
    so a DNS answer that changes after the check (rebinding) is never used, while the URL's host name
    stays in the ``Host`` header and, with TLS, in SNI and certificate verification (httpx's
    ``sni_hostname`` extension). Shared by the input fetcher and the webhook sender."""
    netloc = url.netloc.decode("ascii")
    headers = {**options.pop("headers", {}), "Host": netloc}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    for address in addresses:
        pinned = url.copy_with(host=str(address), username=None, password=None)
        yield client.build_request(method, pinned, headers=headers, extensions=extensions, **options)


def _timeout(exc: httpx.TimeoutException, kind: str, shown: str, policy: FetchPolicy) -> FetchError:
    what = "did not accept a connection" if isinstance(exc, httpx.ConnectTimeout) else "did not answer"
    return FetchError(f"{kind}: {shown} {what} within {policy.timeout_s:g} s")


def _guarded(
    chunks: Iterator[bytes], kind: str, shown: str, policy: FetchPolicy, deadline: float
) -> Iterator[bytes]:
    """``chunks`` with transport errors turned into one-line ``FetchError``s and the overall
    deadline enforced (a read timeout alone lets a server drip one byte per timeout forever)."""
    try:
        for chunk in chunks:
            if time.monotonic() > deadline:
                raise FetchError(f"{kind}: {shown} took longer than {policy.total_timeout_s:g} s to download")
            yield chunk
    except httpx.TimeoutException as exc:
        raise _timeout(exc, kind, shown, policy) from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{kind}: {shown} broke off while downloading ({exc})") from None
