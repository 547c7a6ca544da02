"""Helpers for the /v1/events tests: sign and send raw bytes exactly as a client would."""

import hashlib
import hmac
import json

URL = "/v1/events"
USER_HASH = hashlib.sha256(b"user-1").hexdigest()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(**fields) -> bytes:
    """A valid event, overridden by `fields` (a value of ... removes the field)."""
    data = {"event": "page_view", "user_hash": USER_HASH, "customer_org_id": "org_1", "path": "/dashboard"}
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not ...}, separators=(",", ":")).encode()


def send(client, *, app_uuid, secret: str | None, body: bytes, signature: str | None = None, **headers):
    """POST raw `body`, signed with `secret` unless `signature` is given."""
    extra = {"HTTP_X_APP_UUID": str(app_uuid)}
    if signature is None and secret is not None:
        signature = sign(secret, body)
    if signature is not None:
        extra["HTTP_X_SIGNATURE"] = signature
    content_type = headers.pop("content_type", "application/json")
    extra["CONTENT_TYPE"] = content_type  # the test client leaves it out for an empty body; clients don't
    for name, value in headers.items():
        extra["HTTP_" + name.upper().replace("-", "_")] = value
    return client.generic("POST", URL, data=body, content_type=content_type, **extra)
