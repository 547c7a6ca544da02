"""The `/v1/events` wire format: one strict JSON object per request.

Parsing is strict because the HMAC covers the exact bytes: no NaN/Infinity, no trailing
commas, UTF-8 only (msgspec enforces all three; `json.loads` would accept NaN), and integers are
kept exactly (orjson would turn one above 2^64 into a float unseen). Validation is hand-written
rather than a serializer because it sits on the hot path, and it reports every offending field at
once so a client fixes its payload in one round. Fields we do not read are ignored.

A body the strict decoder refuses only for a value we cannot hold (an unpaired surrogate
`\ud800`, a number like 1e400) is read again leniently so the 400 names that field; `properties`
is held to the limits of `ingest.schemas.json_values` (depth 32, keys of 255 characters, 64-bit
integers), so a 202 is never followed by a failed INSERT or export.
"""

import time
import uuid
from dataclasses import dataclass

import msgspec

from ..errors import NESTED_TOO_DEEPLY, ApiError, bad_request, invalid_json, validation_failed
from .json_values import NotJson, lenient_loads, object_fine, string_problem, value_problems

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


_decode = msgspec.json.Decoder().decode


def body_parse(body: bytes) -> tuple[dict, bool]:
    """(the body as a dict, strict): a 400 when the bytes are not one UTF-8 JSON object.

    `strict` is False when the body was only readable leniently: it then holds values that must
    be named in a 400 (see `v1_event_validate`).
    """
    strict = True
    try:
        data = _decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("The body is not valid UTF-8.", code="invalid_utf8") from None
        try:
            data, strict = lenient_loads(body), False
        except NotJson:
            reason = NESTED_TOO_DEEPLY if isinstance(exc, RecursionError) else str(exc)
            raise invalid_json(reason) from None
    if isinstance(data, dict):
        return data, strict
    if isinstance(data, list):
        raise bad_request(
            "The body must be one JSON object; arrays (batches) are not accepted on /v1/events.", code="not_an_object"
        )
    raise bad_request("The body must be one JSON object.", code="not_an_object")


def _string(
    data: dict, name: str, errors: list, *, required: bool, min_len: int, max_len: int, strict: bool = True
) -> str | None:
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
    if not strict and (problem := string_problem(value)) is not None:
        errors.append({"field": name, "message": problem})
        return None
    return value


def v1_event_validate(data: dict, *, now: float, may_contain_nul: bool = True, strict: bool = True) -> V1Event:
    """Check every field the API reads; raise one 400 naming all offending fields.

    `strict=False` when `data` came from the lenient decoder: strings may then hold unpaired
    surrogates and numbers may be `BadNumber`s, which are named like any other wrong value.
    """
    errors: list[dict] = []
    event = _string(data, "event", errors, required=True, min_len=1, max_len=EVENT_MAX, strict=strict)
    user_hash = _string(
        data, "user_hash", errors, required=True, min_len=USER_HASH_LENGTH, max_len=USER_HASH_LENGTH, strict=strict
    )

    org = data.get("customer_org_id")
    if isinstance(org, int | float) and not isinstance(org, bool):
        data = {**data, "customer_org_id": str(org)}  # documented: a number is coerced to a string
    customer_org_id = _string(
        data, "customer_org_id", errors, required=True, min_len=1, max_len=CUSTOMER_ORG_ID_MAX, strict=strict
    )

    path = _string(data, "path", errors, required=False, min_len=0, max_len=PATH_MAX, strict=strict)
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

    plan = _string(data, "plan", errors, required=False, min_len=0, max_len=PLAN_MAX, strict=strict)
    environment = _string(
        data, "environment", errors, required=False, min_len=0, max_len=ENVIRONMENT_MAX, strict=strict
    )

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
        elif not strict or not object_fine(properties, nul_possible=may_contain_nul):
            problems = value_problems(properties, "properties")
            errors.extend({"field": path, "message": message} for path, message in problems)
            if problems:
                properties = None

    if errors:
        raise validation_failed(errors)
    # The required fields (event, user_hash, customer_org_id) are all set when nothing failed.
    return V1Event(event, user_hash, customer_org_id, path, session_id, plan, environment, ts_epoch, properties)  # type: ignore[arg-type]


def v1_event_parse(body: bytes, *, now: float | None = None) -> V1Event:
    """Parse and validate a raw `/v1/events` body (already authenticated)."""
    data, strict = body_parse(body)
    # JSON can only carry NUL as the escape \u0000 (hex digits, so no case variants): skip the walk otherwise.
    return v1_event_validate(
        data, now=time.time() if now is None else now, may_contain_nul=b"\\u0000" in body, strict=strict
    )


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
