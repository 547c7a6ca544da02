"""The SDK batch envelope (version 1): parsing and per-event validation, built for the hot path.

A batch is judged in two steps. The envelope (`{"events": [...]}`) is all-or-nothing: a body
that is not JSON, not an object or has no `events` list is a 400, and more than the allowed
number of events a 413. Each event is then checked on its own, so one bad event never costs the
good ones their place; a rejected event lists EVERY field that is wrong, not only the first, so
an SDK developer fixes a payload in one round.

Speed: msgspec decodes the whole body in one call straight into typed structs that carry the
wire rules (types, enums, UUID pattern, lengths, ranges), in C. Only when that fails is the
body split into raw per-event slices and each event decoded on its own; a rejected event is
decoded once more, generically, and walked by `event_check`, the hand-written checker that
names every wrong field. msgspec decides, `event_check` explains: if the two ever disagree,
the event is still rejected, with msgspec's own message. `bench/validate_sdk.py` measures it.

Beyond the wire types, values are held to what storage accepts, so a valid event can never make
the INSERT fail for its whole batch: string lengths match the columns, `ts_ms` fits a timestamp,
`bundle_version` a double, and no string (properties included) carries a NUL character, which
PostgreSQL text and jsonb refuse. `properties` is held to the limits of `ingest.schemas.json_values`
(depth 32, keys of 255 characters, 64-bit integers), the same as on `/v1/events`.

A body msgspec refuses only for a value it cannot hold (an unpaired surrogate `\ud800`, invalid
UTF-8 inside a string, a number like 1e400) is read again leniently, so only the event that holds
it is rejected, with the field named, and the rest of the batch is still stored.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from .json_values import (
    SURROGATE_MESSAGE,
    BadNumber,
    NotJson,
    lenient_loads,
    object_fine,
    readable,
    value_problems,
)

SCHEMA_VERSION = 1
PLATFORMS = ("ios", "android")
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a timestamp column holds
REQUIRED = "is required"

# ISO 3166-1 alpha-2, every officially assigned code, plus XK (Kosovo): user-assigned in the
# standard but what iOS and Android report there, so refusing it would drop real devices.
COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK
    """.split()  # noqa: SIM905 - a block of codes reads and diffs better than 250 quoted strings
)

# Column sizes of ingest.SdkEvent: a longer value would fail the INSERT of the whole batch.
MAX_LENGTHS = {
    "event_name": 255,
    "user.user_id": 255,
    "device.os": 64,
    "device.app_version": 64,
    "device.sdk_version": 64,
    "device.locale": 35,
}

_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(_UUID_PATTERN.replace("$", "\\Z")).match
_NUL_ESCAPE = b"\\u0000"  # the only way a NUL can appear in valid JSON text
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_list = msgspec.json.Decoder(list[msgspec.Raw]).decode


Uuid = Annotated[str, msgspec.Meta(pattern=_UUID_PATTERN)]


class _User(msgspec.Struct):
    anon_id: Uuid
    user_id: Annotated[str, msgspec.Meta(max_length=MAX_LENGTHS["user.user_id"])] | None = None


class _Device(msgspec.Struct):
    platform: Literal["ios", "android"]
    os: Annotated[str, msgspec.Meta(max_length=MAX_LENGTHS["device.os"])]
    app_version: Annotated[str, msgspec.Meta(max_length=MAX_LENGTHS["device.app_version"])]
    sdk_version: Annotated[str, msgspec.Meta(max_length=MAX_LENGTHS["device.sdk_version"])]
    locale: Annotated[str, msgspec.Meta(max_length=MAX_LENGTHS["device.locale"])]
    bundle_version: float
    country: str


class _Context(msgspec.Struct):
    session_id: Uuid


class _Consent(msgspec.Struct):
    analytics: bool


class _Privacy(msgspec.Struct):
    consent: _Consent


class _Event(msgspec.Struct):
    """The typed fast path; what msgspec cannot say (country list, NUL, value 1) is checked after."""

    schema_version: int | float
    event_id: Uuid
    event_name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LENGTHS["event_name"])]
    ts_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_TS_MS)]
    user: _User
    device: _Device
    context: _Context
    privacy: _Privacy
    properties: dict | None = None


class _Batch(msgspec.Struct):
    events: list[_Event]


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode


def _row_from_struct(event: _Event, nul_possible: bool) -> dict | None:
    """The storage row of a decoded event, or None when a rule msgspec does not know fails."""
    user, device = event.user, event.device
    if event.schema_version != SCHEMA_VERSION or device.country not in COUNTRY_CODES:
        return None
    if not math.isfinite(device.bundle_version):
        return None
    if nul_possible and _holds_nul(
        [event.event_name, user.user_id, device.os, device.app_version, device.sdk_version, device.locale]
    ):
        return None
    if event.properties and not object_fine(event.properties, nul_possible=nul_possible):
        return None
    return {
        "event_id": event.event_id.lower(),
        "event_name": event.event_name,
        "ts_ms": event.ts_ms,
        "anon_id": user.anon_id,
        "user_id": user.user_id,
        "platform": device.platform,
        "os": device.os,
        "app_version": device.app_version,
        "sdk_version": device.sdk_version,
        "locale": device.locale,
        "bundle_version": device.bundle_version,
        "country": device.country,
        "session_id": event.context.session_id,
        "properties": event.properties,
        "consent": event.privacy.consent.analytics,
    }


class EnvelopeRejected(Exception):
    """The batch as a whole is unusable: answer `status` and store nothing."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class BatchValidation:
    """Valid events as storage rows (in request order, duplicates included) and per-event errors."""

    rows: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    rejected: int = 0


_NOT_AN_ENVELOPE = "The body must be a JSON object with an `events` list."


def envelope_split(body: bytes, *, max_events: int) -> list[msgspec.Raw | object]:
    """The raw JSON of each event of `{"events": [...]}`; raises EnvelopeRejected.

    When msgspec cannot read the body, it is read leniently (`json_values.lenient_loads`) and the
    events are returned decoded instead of raw, so one unreadable event costs only itself.
    """
    try:
        top = _decode_object(body)
        events = top.get("events")
        if events is None:
            raise EnvelopeRejected(400, _NOT_AN_ENVELOPE)
        raw_events: list = _decode_list(events)
    except msgspec.ValidationError:
        raise EnvelopeRejected(400, _NOT_AN_ENVELOPE) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raw_events = _events_read_leniently(body)
    except RecursionError:
        raise EnvelopeRejected(400, "The body is nested too deeply.") from None
    if len(raw_events) > max_events:
        raise EnvelopeRejected(413, f"A batch holds at most {max_events} events; split it.")
    return raw_events


def _events_read_leniently(body: bytes) -> list:
    try:
        top = lenient_loads(body)
    except NotJson:
        raise EnvelopeRejected(400, "The body is not valid JSON.") from None
    events = top.get("events") if type(top) is dict else None
    if type(events) is not list:
        raise EnvelopeRejected(400, _NOT_AN_ENVELOPE)
    return events


def batch_validate(body: bytes, *, max_events: int) -> BatchValidation:
    """Split the envelope and check every event; raises EnvelopeRejected for the 400/413 cases."""
    nul_possible = _NUL_ESCAPE in body
    # Fast path, the usual case: the whole batch is valid and decodes in one call.
    try:
        events = _decode_batch(body).events
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
        events = None
    if events is not None:
        if len(events) > max_events:
            raise EnvelopeRejected(413, f"A batch holds at most {max_events} events; split it.")
        rows = [_row_from_struct(event, nul_possible) for event in events]
        if None not in rows:
            return BatchValidation(rows=rows)  # type: ignore[arg-type]  # no None in rows: checked above
    # Otherwise judge the envelope, then each event on its own.
    raw_events = envelope_split(body, max_events=max_events)
    result = BatchValidation()
    for index, raw in enumerate(raw_events):
        verdict = ""
        if type(raw) is not msgspec.Raw:  # read leniently: re-encoded, unless it holds what JSON text cannot
            try:
                raw = msgspec.Raw(_encode(raw))
            except (TypeError, UnicodeEncodeError, OverflowError):
                result.rejected += 1
                result.errors.extend(_explained(raw, index, "not storable"))
                continue
        try:
            row = _row_from_struct(_decode_event(raw), nul_possible)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # ValidationError is a DecodeError
            row, verdict = None, str(exc)
        if row is not None:
            result.rows.append(row)
        else:
            result.rejected += 1
            result.errors.extend(_explain(raw, index, verdict))
    return result


def _explain(raw: msgspec.Raw, index: int, verdict: str) -> list[dict]:
    """Every wrong field of a rejected event (the slow path, for bad events only)."""
    try:
        event = _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        try:
            event = lenient_loads(bytes(raw))
        except NotJson:
            return [{"index": index, "event_id": None, "field": None, "message": f"not decodable: {exc}"}]
    return _explained(event, index, verdict)


def _explained(event: object, index: int, verdict: str) -> list[dict]:
    _, problems = event_check(event)
    if not problems:  # the problem is outside the fields we read (say a surrogate in an unknown key)
        found = value_problems(event, "", max_depth=None)
        problems = [(path.lstrip(".") or None, message) for path, message in found]
    if not problems:  # the two checkers disagree: still rejected, with msgspec's reason
        problems = [(None, verdict or "invalid event")]
    event_id = event.get("event_id") if type(event) is dict else None
    readable_id = readable(event_id[:64], 64) if type(event_id) is str else None
    return [{"index": index, "event_id": readable_id, "field": path, "message": message} for path, message in problems]


def event_check(event: Any, *, nul_possible: bool = True) -> tuple[dict | None, list[tuple[str | None, str]]]:
    """(storage row, []) for a valid event, else (None, [(field path, message), ...]).

    `nul_possible=False` skips the NUL scans when the body holds no `\\u0000` escape at all.
    """
    if type(event) is not dict:
        return None, [(None, "an event must be a JSON object")]
    errors: list[tuple[str | None, str]] = []

    version = event.get("schema_version")
    if version is None:
        errors.append(("schema_version", REQUIRED))
    elif type(version) not in (int, float) or version != SCHEMA_VERSION:
        errors.append(("schema_version", "must be the number 1"))

    event_id = _uuid(event.get("event_id"), "event_id", errors)
    event_id = event_id.lower() if event_id is not None else None
    event_name = _string(event.get("event_name"), "event_name", errors, nul_possible, required=True)
    if event_name == "":
        errors.append(("event_name", "must not be empty"))

    ts_ms = event.get("ts_ms")
    if ts_ms is None:
        errors.append(("ts_ms", REQUIRED))
    elif type(ts_ms) is not int or not 0 <= ts_ms <= MAX_TS_MS:
        errors.append(("ts_ms", f"must be an integer of Unix milliseconds between 0 and {MAX_TS_MS}"))

    user = _object(event.get("user"), "user", errors, required=True)
    anon_id = user_id = None
    if user is not None:
        anon_id = _uuid(user.get("anon_id"), "user.anon_id", errors)
        user_id = _string(user.get("user_id"), "user.user_id", errors, nul_possible, required=False)

    device = _object(event.get("device"), "device", errors, required=True)
    platform = os_ = app_version = sdk_version = locale = bundle_version = country = None
    if device is not None:
        platform = device.get("platform")
        if platform is None:
            errors.append(("device.platform", REQUIRED))
        elif type(platform) is not str or platform not in PLATFORMS:
            errors.append(("device.platform", 'must be "ios" or "android"'))
        os_ = _string(device.get("os"), "device.os", errors, nul_possible, required=True)
        app_version = _string(device.get("app_version"), "device.app_version", errors, nul_possible, required=True)
        sdk_version = _string(device.get("sdk_version"), "device.sdk_version", errors, nul_possible, required=True)
        locale = _string(device.get("locale"), "device.locale", errors, nul_possible, required=True)
        bundle_version = _number(device.get("bundle_version"), "device.bundle_version", errors)
        country = device.get("country")
        if country is None:
            errors.append(("device.country", REQUIRED))
        elif type(country) is not str or country not in COUNTRY_CODES:
            errors.append(("device.country", "must be an ISO 3166-1 alpha-2 country code in capitals, e.g. US"))

    context = _object(event.get("context"), "context", errors, required=True)
    session_id = _uuid(context.get("session_id"), "context.session_id", errors) if context is not None else None

    properties = _object(event.get("properties"), "properties", errors, required=False)
    if properties is not None:
        errors.extend(value_problems(properties, "properties"))

    consent = None
    privacy = _object(event.get("privacy"), "privacy", errors, required=True)
    if privacy is not None:
        consent_obj = _object(privacy.get("consent"), "privacy.consent", errors, required=True)
        if consent_obj is not None:
            consent = consent_obj.get("analytics")
            if consent is None:
                errors.append(("privacy.consent.analytics", REQUIRED))
            elif type(consent) is not bool:
                errors.append(("privacy.consent.analytics", "must be a boolean"))

    if errors:
        return None, errors
    return {
        "event_id": event_id,
        "event_name": event_name,
        "ts_ms": ts_ms,
        "anon_id": anon_id,
        "user_id": user_id,
        "platform": platform,
        "os": os_,
        "app_version": app_version,
        "sdk_version": sdk_version,
        "locale": locale,
        "bundle_version": bundle_version,
        "country": country,
        "session_id": session_id,
        "properties": properties,
        "consent": consent,
    }, errors


def _uuid(value: Any, path: str, errors: list) -> str | None:
    """The value when it is a canonical UUID string (PostgreSQL's uuid type ignores case)."""
    if value is None:
        errors.append((path, REQUIRED))
    elif type(value) is not str or not _UUID(value):
        errors.append((path, "must be a UUID string like 550e8400-e29b-41d4-a716-446655440000"))
    else:
        return value
    return None


def _string(value: Any, path: str, errors: list, nul_possible: bool, *, required: bool) -> str | None:
    if value is None:
        if required:
            errors.append((path, REQUIRED))
        return None
    if type(value) is not str:
        errors.append((path, "must be a string"))
        return None
    limit = MAX_LENGTHS.get(path)
    if limit is not None and len(value) > limit:
        errors.append((path, f"must be at most {limit} characters"))
    if nul_possible and "\x00" in value:
        errors.append((path, "must not contain NUL characters (\\u0000)"))
    if not value.isascii():  # only a leniently read body can hold these
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            errors.append((path, SURROGATE_MESSAGE))
    return value


def _number(value: Any, path: str, errors: list) -> float | None:
    if value is None:
        errors.append((path, REQUIRED))
        return None
    if type(value) in (int, float, BadNumber):
        try:
            number = float(value) if type(value) is not BadNumber else math.inf
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
        errors.append((path, "must be a finite number"))
        return None
    errors.append((path, "must be a number"))
    return None


def _object(value: Any, path: str, errors: list, *, required: bool) -> dict | None:
    if value is None:
        if required:
            errors.append((path, REQUIRED))
        return None
    if type(value) is not dict:
        errors.append((path, "must be an object"))
        return None
    return value


def _holds_nul(value: Any) -> bool:
    """Walk a decoded JSON value (iteratively: depth is bounded by the decoder, not by us)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if "\x00" in item:
                return True
        elif type(item) is dict:
            for key, child in item.items():
                if "\x00" in key:
                    return True
                stack.append(child)
        elif type(item) is list:
            stack.extend(item)
    return False


def identify_check(body: bytes) -> tuple[tuple[str, str] | None, list[dict]]:
    """((anon_id, user_id), []) or (None, [{"field", "message"}, ...]) for an identify body.

    A body that is not a JSON object raises EnvelopeRejected (a plain 400).
    """
    try:
        payload = _decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        try:  # a value msgspec cannot hold (say `\ud800`) is then named below, not refused as "not JSON"
            payload = lenient_loads(body)
        except NotJson:
            raise EnvelopeRejected(400, "The body is not valid JSON.") from None
    if type(payload) is not dict:
        raise EnvelopeRejected(400, "The body must be a JSON object with `anon_id` and `user_id`.")
    errors: list[tuple[str | None, str]] = []
    anon_id = _uuid(payload.get("anon_id"), "anon_id", errors)
    user_id = _string(payload.get("user_id"), "user_id", errors, True, required=True)
    if user_id is not None:
        if not user_id.strip():
            errors.append(("user_id", "must not be empty"))
        elif len(user_id) > MAX_LENGTHS["user.user_id"]:
            errors.append(("user_id", f"must be at most {MAX_LENGTHS['user.user_id']} characters"))
    if errors:
        return None, [{"field": path, "message": message} for path, message in errors]
    return (anon_id, user_id), []  # type: ignore[return-value]  # neither is None when nothing failed
