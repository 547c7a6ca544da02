"""Which URLs an endpoint may have: checked when it is saved, and again at every send (DNS can change).

Refused when saved (form, admin, `create_webhook`, `endpoint_create`): anything but http(s) with a
host; port 0 (no receiver listens there, and a check written `port or 80` looks at port 80 instead);
credentials in the URL (they would sit in plain text where URLs are shown and logged: the
signature is how a receiver authenticates us); and, unless WEBHOOK_ALLOW_PRIVATE_TARGETS, a host
that is or resolves to a loopback, private, link-local, CGNAT, unspecified, documentation,
multicast or reserved address. A name that does not resolve yet is accepted: the send-time check
in `transport` decides on what it resolves to then.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from .transport import address_is_public

INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")


def _resolved(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def target_url_check(url: str, *, allow_private: bool | None = None) -> None:
    """Raise ValidationError (for the `url` field) when `url` is not one we deliver to."""
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_TARGETS if allow_private is None else allow_private
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationError(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Use an http:// or https:// URL with a host.")
    if parts.port == 0:
        raise ValidationError("Port 0 is not a port a receiver can listen on: use 1-65535, or none for the default.")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            "Remove the user name and password from the URL: credentials in URLs are not stored. "
            "Receivers authenticate deliveries with the webhook-signature header."
        )
    if allow_private:
        return
    host = parts.hostname.rstrip(".").lower()
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host == "localhost" or host.endswith(INTERNAL_SUFFIXES):
            raise ValidationError(f"{host} is an internal name; webhooks go to public addresses only.") from None
        addresses = _resolved(host, port)
    refused = sorted({str(ip) for ip in addresses if not address_is_public(ip)})
    if refused:
        raise ValidationError(
            f"{host} is or resolves to a non-public address ({', '.join(refused)}): loopback, private, "
            "link-local, shared (CGNAT), unspecified and documentation addresses are refused."
        )


def url_masked(url: str) -> str:
    """The URL with any password replaced, for display (endpoints saved before credentials were refused)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{parts.username}:•••@{netloc[-1]}").geturl()
