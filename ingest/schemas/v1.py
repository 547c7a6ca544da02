"""The `/v1/events` wire format: one strict JSON object per request.

Parsing is strict because the HMAC covers the exact bytes: no NaN/Infinity, no trailing
commas, UTF-8 only (orjson enforces all three; `json.loads` would accept NaN). Validation is
hand-written rather than a serializer because it sits on the hot path, and it reports every
offending field at once so a client fixes its payload in one round. Fields we do not read are
ignored.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ApiError, bad_request, validation_failed

EVENT_MAX = 255
USER_HASH_LENGTH = 64
CUSTOMER_ORG_ID_MAX = 255  # the column's width
PATH_MAX = 2048
PLAN_MAX = 255
ENVIRONMENT_MAX = 32
TS_MAX_FUTURE_SECONDS = 366 * 24 * 3600  # "about a year": a leap year of clock skew is still fine
IDEMPOTENCY_KEY_MAX = 255

_NUL = "\x00"  # PostgreSQL text and jsonb cannot store it; it can only arrive as the escape \u0000


@dataclass(frozen=True, slots=True)
class V1Event:
    event: str
    user_hash: str
    customer_org_id: str
    path: str | None
    session_id: uuid.UUID | None
    plan: str | None
    environment: str | None
    ts_epoch: int | None
    properties: dict | None


def body_parse(body: bytes) -> dict:
    """The body as a dict, or a 400 that says what is wrong with the bytes."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("The body is not valid UTF-8.", code="invalid_utf8") from None
        raise bad_request(
            f"The body is not valid JSON ({exc}); NaN, Infinity and trailing commas are not allowed.",
            code="invalid_json",
        ) from None
    if isinstance(data, dict):
        return data
    if isinstance(data, list):
        raise bad_request(
            "The body must be one JSON object; arrays (batches) are not accepted on /v1/events.", code="not_an_object"
        )
    raise bad_request("The body must be one JSON object.", code="not_an_object")


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return _NUL in value
    if isinstance(value, dict):
        return any(_NUL in k or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _string(data: dict, name: str, errors: list, *, required: bool, min_len: int, max_len: int) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            errors.append({"field": name, "message": "is required"})
        return None
    if not isinstance(value, str):
        errors.append({"field": name, "message": "must be a string"})
        return None
    n = len(value)
    if n < min_len or n > max_len:
        if min_len == max_len:
            message = f"must be exactly {max_len} characters"
        elif n < min_len:
            message = "must not be empty" if min_len == 1 else f"must be at least {min_len} characters"
        else:
            message = f"must be at most {max_len} characters"
        errors.append({"field": name, "message": message})
        return None
    if _NUL in value:
        errors.append({"field": name, "message": "must not contain NUL characters"})
        return None
    return value


def v1_event_validate(data: dict, *, now: float, may_contain_nul: bool = True) -> V1Event:
    """Check every field the API reads; raise one 400 naming all offending fields."""
    errors: list[dict] = []
    event = _string(data, "event", errors, required=True, min_len=1, max_len=EVENT_MAX)
    user_hash = _string(data, "user_hash", errors, required=True, min_len=USER_HASH_LENGTH, max_len=USER_HASH_LENGTH)

    org = data.get("customer_org_id")
    if isinstance(org, int | float) and not isinstance(org, bool):
        data = {**data, "customer_org_id": str(org)}  # documented: a number is coerced to a string
    customer_org_id = _string(data, "customer_org_id", errors, required=True, min_len=1, max_len=CUSTOMER_ORG_ID_MAX)

    path = _string(data, "path", errors, required=False, min_len=0, max_len=PATH_MAX)
    if path is not None and not path.startswith("/"):
        errors.append({"field": "path", "message": "must start with /"})
        path = None

    session_id = None
    raw_session = data.get("session_id")
    if raw_session is not None:
        if not isinstance(raw_session, str):
            errors.append({"field": "session_id", "message": "must be a UUID string"})
        else:
            try:
                session_id = uuid.UUID(raw_session)
            except ValueError:
                errors.append({"field": "session_id", "message": "must be a UUID string"})

    plan = _string(data, "plan", errors, required=False, min_len=0, max_len=PLAN_MAX)
    environment = _string(data, "environment", errors, required=False, min_len=0, max_len=ENVIRONMENT_MAX)

    ts_epoch = data.get("ts_epoch")
    if ts_epoch is not None:
        if not isinstance(ts_epoch, int) or isinstance(ts_epoch, bool):
            errors.append({"field": "ts_epoch", "message": "must be an integer (Unix seconds)"})
            ts_epoch = None
        elif ts_epoch < 0:
            errors.append({"field": "ts_epoch", "message": "must not be negative"})
            ts_epoch = None
        elif ts_epoch > now + TS_MAX_FUTURE_SECONDS:
            errors.append({"field": "ts_epoch", "message": "must not be more than a year in the future"})
            ts_epoch = None

    properties = data.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            errors.append({"field": "properties", "message": "must be an object"})
            properties = None
        elif may_contain_nul and _contains_nul(properties):
            errors.append({"field": "properties", "message": "must not contain NUL characters"})
            properties = None

    if errors:
        raise validation_failed(errors)
    return V1Event(event, user_hash, customer_org_id, path, session_id, plan, environment, ts_epoch, properties)


def v1_event_parse(body: bytes, *, now: float | None = None) -> V1Event:
    """Parse and validate a raw `/v1/events` body (already authenticated)."""
    data = body_parse(body)
    # JSON can only carry NUL as the escape \u0000 (hex digits, so no case variants): skip the walk otherwise.
    return v1_event_validate(data, now=time.time() if now is None else now, may_contain_nul=b"\\u0000" in body)


def idempotency_key_check(value: str | None) -> str | None:
    """The `Idempotency-Key` header, or None when absent; printable ASCII, 1-255 characters."""
    if value is None:
        return None
    if not 0 < len(value) <= IDEMPOTENCY_KEY_MAX or not value.isascii() or not value.isprintable():
        raise ApiError(
            status_code=400,
            code="validation_failed",
            message="The Idempotency-Key header is invalid.",
            details=[
                {
                    "field": "Idempotency-Key",
                    "message": f"must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters",
                }
            ],
        )
    return value
