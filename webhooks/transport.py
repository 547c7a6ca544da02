"""One HTTP POST to a customer's endpoint, refusing internal targets (SSRF).

The host is resolved at send time, every address is vetted, and the connection goes to the
vetted address itself (Host header and TLS name stay the URL's host), so a DNS answer that
changes between the check and the connect (rebinding) cannot redirect the request inward.
Redirects are never followed and only the first 20 KB of the answer is read.
"""

import base64
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import certifi
import urllib3

RESPONSE_BODY_LIMIT = 20 * 1024


class TargetRefusedError(Exception):
    """The URL is not one we deliver to (bad scheme, unresolvable, or an internal address)."""


@dataclass
class HttpResult:
    status: int | None
    duration_ms: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    refused: bool = False  # the target itself was refused (TargetRefusedError): retrying cannot help


def address_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified and shared space."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not address_is_public(embedded):
            return False
    return ip.is_global and not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def target_resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The first acceptable address of `host`, or TargetRefusedError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefusedError(f"cannot resolve {host}: {exc}") from None
    refused = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if allow_private or address_is_public(ip):
            return str(ip)
        refused.append(str(ip))
    raise TargetRefusedError(f"{host} resolves to non-public address(es) {', '.join(refused)}; refused")


def post(*, url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> HttpResult:
    """POST once. Never raises for network trouble: the error is in the result."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefusedError(f"only http(s) URLs with a host are delivered to, not {parts.scheme!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = target_resolve(host, port, allow_private=allow_private)

    headers = dict(headers)
    host_header = f"[{host}]" if ":" in host else host
    headers["Host"] = host_header if parts.port is None else f"{host_header}:{parts.port}"
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    pool_timeout = urllib3.Timeout(total=timeout)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            ip,
            port,
            server_hostname=host,
            assert_hostname=host,
            ca_certs=certifi.where(),
            timeout=pool_timeout,
            retries=False,
            maxsize=1,
        )
    else:
        pool = urllib3.HTTPConnectionPool(ip, port, timeout=pool_timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            raw = response.read(RESPONSE_BODY_LIMIT)
        finally:
            response.release_conn()
        return HttpResult(
            status=response.status,
            duration_ms=elapsed(),
            body=raw.decode("utf-8", errors="replace"),
            headers={k.lower(): v for k, v in response.headers.items()},
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return HttpResult(status=None, duration_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        pool.close()
