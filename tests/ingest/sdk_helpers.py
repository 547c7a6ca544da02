"""Building SDK envelopes and posting them the way an SDK does (raw JSON bytes, x-api-key)."""

import copy
import gzip
import json
import uuid

EVENTS_URL = "/api/v1/ingest/events"
IDENTIFY_URL = "/api/v1/ingest/identify"
HEALTH_URL = "/api/v1/ingest/health"

_MISSING = object()


def sdk_event(**overrides) -> dict:
    """A valid v1 event; `overrides` maps dotted paths to values (MISSING deletes the key)."""
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_name": "session_start",
        "ts_ms": 1708344000123,
        "user": {"anon_id": str(uuid.uuid4()), "user_id": "user-12345"},
        "device": {
            "platform": "ios",
            "os": "17.0",
            "app_version": "1.0.0",
            "sdk_version": "1.0.0",
            "bundle_version": 3,
            "locale": "en_US",
            "country": "US",
        },
        "context": {"session_id": str(uuid.uuid4())},
        "properties": {"product_id": "premium_monthly", "price": 9.99},
        "privacy": {"consent": {"analytics": True}},
    }
    for path, value in overrides.items():
        set_path(event, path.replace("__", "."), value)
    return event


def set_path(event: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    node = event
    for name in parents:
        node = node[name]
    if value is MISSING:
        node.pop(leaf, None)
    else:
        node[leaf] = copy.deepcopy(value)
    return event


MISSING = _MISSING


def post_raw(client, url: str, body: bytes, *, key: str | None, **headers):
    if key is not None:
        headers["x-api-key"] = key
    content_type = headers.pop("content_type", "application/json")
    return client.generic("POST", url, body, content_type=content_type, headers=headers)


def post_events(client, key: str | None, events: list, *, gzipped: bool = False):
    body = json.dumps({"events": events}).encode()
    if gzipped:
        return post_raw(client, EVENTS_URL, gzip.compress(body), key=key, **{"Content-Encoding": "gzip"})
    return post_raw(client, EVENTS_URL, body, key=key)
