"""Signing secrets and signatures, per the Standard Webhooks specification.

A secret is `whsec_` + base64 of random bytes; the HMAC key is the decoded bytes. The signed
content is `"{webhook-id}.{webhook-timestamp}.{body}"`, so a receiver can reject replays and a
signature can never be moved to another message.
"""

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix of the format, not a secret
SECRET_BYTES = 32  # the specification allows 24 to 64


def secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """The last characters, enough to tell two secrets apart in the admin."""
    return secret[-4:]


def secret_mask(hint: str) -> str:
    return f"{SECRET_PREFIX}…{hint}" if hint else ""


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of `id.timestamp.body` with one secret."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(*, secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per live secret (two during a rotation)."""
    return " ".join(signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)
