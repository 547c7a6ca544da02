"""Turn a client's JSON into a `Query`, or a 400 that names every offending member.

Validation is total: any JSON value (object, list, number, string, null, deeply nested) yields
either a `Query` or an `ApiError` 400; nothing the client sends reaches an engine unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.errors import ApiError

from .fields import INTERVALS, MEASURES, OPS, PROPERTY_KEY, PROPERTY_PREFIX, SOURCES, Field, Source

MAX_SPAN = timedelta(days=400)
MAX_GROUPS = 2
MAX_FILTERS = 20
MAX_LIST_VALUES = 100
MAX_STRING = 1024
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1000
KEYS = {"source", "measure", "from", "to", "interval", "group_by", "filters", "limit"}
FILTER_KEYS = {"field", "op", "value"}

Scalar = str | float


@dataclass(frozen=True)
class Filter:
    field: Field
    prop: str | None  # the key of a `properties.<key>` field
    op: str
    value: Scalar | list[Scalar] | None


@dataclass(frozen=True)
class GroupField:
    name: str  # as the client wrote it: the column's name in the answer
    field: Field
    prop: str | None


@dataclass(frozen=True)
class Query:
    source: Source
    measure: str
    start: datetime
    end: datetime
    interval: str | None
    group_by: list[GroupField] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT


class _Errors:
    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def add(self, where: str, message: str) -> None:
        self.details.append({"field": where, "message": message})


def query_parse(raw: object) -> Query:
    """Validate `raw` (decoded JSON) against the query language; raise ApiError 400 listing each error."""
    errors = _Errors()
    if not isinstance(raw, dict):
        errors.add("", "The query must be a JSON object.")
        raise _invalid(errors)
    for key in sorted(set(raw) - KEYS, key=str):
        errors.add(str(key), "Unknown member.")

    source = _choice(raw, "source", list(SOURCES), errors)
    src = SOURCES.get(source) if source else None
    measure = _choice(raw, "measure", list(MEASURES), errors)
    if src is not None and measure is not None and measure not in src.measures:
        errors.add("measure", f"`{measure}` is not available for {src.name}.")
    start = _time(raw, "from", errors)
    end = _time(raw, "to", errors)
    if start is not None and end is not None:
        if end <= start:
            errors.add("to", "Must be later than `from`.")
        elif end - start > MAX_SPAN:
            errors.add("to", "The range may span at most 400 days.")
    interval = None
    if raw.get("interval") is not None:
        interval = _choice(raw, "interval", list(INTERVALS), errors)
    limit = _limit(raw, errors)
    group_by = _group_by(raw.get("group_by", []), src, errors)
    filters = _filters(raw.get("filters", []), src, errors)

    if errors.details or src is None or measure is None or start is None or end is None:
        raise _invalid(errors)
    return Query(
        source=src,
        measure=measure,
        start=start,
        end=end,
        interval=interval,
        group_by=group_by,
        filters=filters,
        limit=limit,
    )


def _invalid(errors: _Errors) -> ApiError:
    return ApiError(
        status_code=400, code="validation_failed", message="The query failed validation.", details=errors.details
    )


def _choice(raw: dict, key: str, choices: list[str], errors: _Errors) -> str | None:
    value = raw.get(key)
    if value is None and key not in raw:
        errors.add(key, "Required.")
        return None
    if not isinstance(value, str) or value not in choices:
        errors.add(key, "Must be one of: " + ", ".join(choices) + ".")
        return None
    return value


def _time(raw: dict, key: str, errors: _Errors) -> datetime | None:
    value = raw.get(key)
    if key not in raw:
        errors.add(key, "Required.")
        return None
    message = "Must be an ISO 8601 time with a timezone, e.g. 2026-11-01T00:00:00Z."
    if not isinstance(value, str) or len(value) > 64:
        errors.add(key, message)
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        errors.add(key, message)
        return None
    if not 1971 <= parsed.year <= 9998:
        errors.add(key, "Out of range (years 1971 to 9998).")
        return None
    return parsed


def _limit(raw: dict, errors: _Errors) -> int:
    value = raw.get("limit", DEFAULT_LIMIT)
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        errors.add("limit", f"Must be an integer from 1 to {MAX_LIMIT}.")
        return DEFAULT_LIMIT
    return value


def _field(value: Any, src: Source | None, where: str, errors: _Errors) -> tuple[Field, str | None] | None:
    if not isinstance(value, str):
        errors.add(where, "Must be a field name.")
        return None
    if value.startswith(PROPERTY_PREFIX):
        key = value[len(PROPERTY_PREFIX) :]
        if not PROPERTY_KEY.fullmatch(key):
            errors.add(where, "A property key is 1 to 64 letters, digits or underscores.")
            return None
        return Field(value, "properties", "properties"), key
    if src is None:
        return None  # the source is wrong: that error is already listed
    found = src.fields.get(value)
    if found is None:
        names = ", ".join([*src.fields, "properties.<key>"])
        errors.add(where, f"Unknown field of {src.name}; one of: {names}.")
        return None
    return found, None


def _group_by(value: Any, src: Source | None, errors: _Errors) -> list[GroupField]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add("group_by", "Must be a list of field names.")
        return []
    if len(value) > MAX_GROUPS:
        errors.add("group_by", f"At most {MAX_GROUPS} fields.")
        return []
    groups: list[GroupField] = []
    for i, item in enumerate(value):
        where = f"group_by[{i}]"
        found = _field(item, src, where, errors)
        if found is None:
            continue
        if any(g.name == item for g in groups):
            errors.add(where, "Listed twice.")
            continue
        groups.append(GroupField(name=item, field=found[0], prop=found[1]))
    return groups


def _filters(value: Any, src: Source | None, errors: _Errors) -> list[Filter]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add("filters", "Must be a list of filters.")
        return []
    if len(value) > MAX_FILTERS:
        errors.add("filters", f"At most {MAX_FILTERS} filters.")
        return []
    filters: list[Filter] = []
    for i, item in enumerate(value):
        where = f"filters[{i}]"
        if not isinstance(item, dict):
            errors.add(where, 'Must be an object {"field", "op", "value"}.')
            continue
        for key in sorted(set(item) - FILTER_KEYS, key=str):
            errors.add(f"{where}.{key}", "Unknown member.")
        found = _field(item.get("field"), src, f"{where}.field", errors)
        op = item.get("op")
        if not isinstance(op, str) or op not in OPS:
            errors.add(f"{where}.op", "Must be one of: " + ", ".join(OPS) + ".")
            continue
        if found is None:
            continue
        fld, prop = found
        parsed = _filter_value(op, item.get("value"), fld, f"{where}.value", errors)
        if parsed is not _BAD:
            filters.append(Filter(field=fld, prop=prop, op=op, value=parsed))  # type: ignore[arg-type]
    return filters


_BAD = object()


def _filter_value(op: str, value: Any, fld: Field, where: str, errors: _Errors) -> object:
    if op in ("is_set", "is_not_set"):
        if value is not None:
            errors.add(where, f"`{op}` takes no value.")
            return _BAD
        return None
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST_VALUES:
            errors.add(where, f"`{op}` takes a list of 1 to {MAX_LIST_VALUES} values.")
            return _BAD
        items = [_scalar(v, fld, f"{where}[{j}]", errors) for j, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in items) else items
    if op in ("prefix", "contains"):
        if fld.kind == "number":
            errors.add(where.rsplit(".", 1)[0] + ".op", f"`{op}` applies to text fields only.")
            return _BAD
        if not isinstance(value, str):
            errors.add(where, f"`{op}` takes a string.")
            return _BAD
    return _scalar(value, fld, where, errors)


def _scalar(value: Any, fld: Field, where: str, errors: _Errors) -> object:
    """A value compared with a field: a number for numeric fields, else text (numbers and booleans
    given for a text field compare as their JSON text, which is how a property's value reads)."""
    if fld.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > 1e300:
            errors.add(where, "Must be a number.")
            return _BAD
        return float(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) < 10**18:
        return str(value)
    if not isinstance(value, str):
        errors.add(where, "Must be a string (or an integer or boolean, compared as text).")
        return _BAD
    if len(value) > MAX_STRING:
        errors.add(where, f"At most {MAX_STRING} characters.")
        return _BAD
    if "\x00" in value or not _utf8(value):
        errors.add(where, "Must be valid text (no NUL characters or lone surrogates).")
        return _BAD
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
