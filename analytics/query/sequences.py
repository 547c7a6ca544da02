"""What funnels and retention share: an event step (a name plus the explorer's filters), who is
counted (users or orgs), and how one step's rows are selected on either engine.

Steps are validated with the explorer's own filter rules (`validation`) and printed by its dialects
(`compiler`), so a filter means the same thing in a funnel, a retention query and the explorer, and
every client value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apps_registry.models import Application

from .compiler import _BigQuery, _Dialect, _filter_sql, _Postgres
from .fields import SOURCES, Field, Source
from .validation import Filter, _Errors, _filters, _invalid, _time

COUNT_BY = ("users", "orgs")
ANY_EVENT = "*"
MAX_SPAN_DAYS = 400


@dataclass(frozen=True)
class Step:
    """An event name (or `*`, any event) and filters, all of which a row must match."""

    event: str
    filters: list[Filter] = field(default_factory=list)


def event_field(src: Source) -> Field:
    return src.fields["event" if src.name == "events" else "event_name"]


def entity_field(src: Source, count_by: str) -> Field:
    """The column that names a counted entity: a user (user_hash; on SDK events user_id, else anon_id) or an org."""
    measure = src.measures[count_by]
    assert measure is not None  # noqa: S101 (users/orgs are distinct measures by construction)
    return measure


def dialect(engine: str) -> _Dialect:
    return _Postgres() if engine == "postgres" else _BigQuery()


def entity_sql(d: _Dialect, src: Source, count_by: str) -> str:
    fld = entity_field(src, count_by)
    return fld.pg if d.engine == "postgres" else fld.bq


def step_rows_where(
    d: _Dialect, *, app: Application, src: Source, step: Step, count_by: str, start: datetime, end: datetime
) -> str:
    """The WHERE clause of one step's rows in [start, end): the app, consent, the name, the filters."""
    where = [
        d.app_match(app),
        f"occurred_at >= {d.param(start, 'TIMESTAMP')}",
        f"occurred_at < {d.param(end, 'TIMESTAMP')}",
    ]
    if src.pg_only_consented:
        where.append("consent_analytics")  # events without analytics consent are never queried
    where.append(step_match(d, src=src, step=step))
    where.append(f"{entity_sql(d, src, count_by)} IS NOT NULL")
    return " AND ".join(where)


def step_match(d: _Dialect, *, src: Source, step: Step) -> str:
    """The condition a row of the step's range matches the step on: its name and filters (TRUE for `*`)."""
    where = []
    if step.event != ANY_EVENT:
        fld = event_field(src)
        where.append(f"{fld.pg if d.engine == 'postgres' else fld.bq} = {d.param(step.event, 'STRING')}")
    where += [_filter_sql(d, flt) for flt in step.filters]
    return " AND ".join(where) or "TRUE"


# --- validation helpers --------------------------------------------------------------------------


def parse_source(raw: dict, errors: _Errors) -> Source | None:
    value = raw.get("source")
    if "source" not in raw:
        errors.add("source", "Required.")
        return None
    if not isinstance(value, str) or value not in SOURCES:
        errors.add("source", "Must be one of: " + ", ".join(SOURCES) + ".")
        return None
    return SOURCES[value]


def parse_count_by(raw: dict, src: Source | None, errors: _Errors) -> str:
    value = raw.get("count_by", "users")
    if value is None:
        value = "users"
    if not isinstance(value, str) or value not in COUNT_BY:
        errors.add("count_by", "Must be one of: " + ", ".join(COUNT_BY) + ".")
        return "users"
    if src is not None and value not in src.measures:
        errors.add("count_by", f"`{value}` is not available for {src.name} (users only).")
    return value


def parse_range(raw: dict, errors: _Errors) -> tuple[datetime | None, datetime | None]:
    start = _time(raw, "from", errors)
    end = _time(raw, "to", errors)
    if start is not None and end is not None:
        if end <= start:
            errors.add("to", "Must be later than `from`.")
        elif (end - start).days > MAX_SPAN_DAYS or ((end - start).days == MAX_SPAN_DAYS and (end - start).seconds):
            errors.add("to", f"The range may span at most {MAX_SPAN_DAYS} days.")
    return start, end


def parse_step(
    value: Any, src: Source | None, where: str, errors: _Errors, *, name_key: str = "event", allow_any: bool = False
) -> Step | None:
    """One step: `{"event": name, "filters": [...]}`; errors name `where.event`, `where.filters[i].op`..."""
    if not isinstance(value, dict):
        errors.add(where, 'Must be an object {"event", "filters"}.')
        return None
    for key in sorted(set(value) - {name_key, "filters"}, key=str):
        errors.add(f"{where}.{key}", "Unknown member.")
    event = value.get(name_key)
    ok = True
    if not isinstance(event, str) or not 1 <= len(event) <= 128 or "\x00" in event:
        errors.add(
            f"{where}.{name_key}", "Required: an event name (1 to 128 characters)." + (" Or `*`." if allow_any else "")
        )
        ok = False
    elif event == ANY_EVENT and not allow_any:
        errors.add(f"{where}.{name_key}", "A step names one event; `*` is not allowed here.")
        ok = False
    sub = _Errors()
    filters = _filters(value.get("filters", []), src, sub)
    for detail in sub.details:
        errors.add(f"{where}.{detail['field']}", detail["message"])
    if not ok or sub.details:
        return None
    return Step(event=event, filters=filters)  # type: ignore[arg-type]


def parse_environment(raw: dict, src: Source | None, errors: _Errors) -> str | None:
    """`environment` as on the other endpoints: only that environment's events (events only)."""
    value = raw.get("environment")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 32:
        errors.add("environment", "Must be an environment name (at most 32 characters).")
        return None
    if src is not None and "environment" not in src.fields:
        errors.add("environment", f"Not available for {src.name}.")
        return None
    return value


def environment_filter(src: Source, environment: str | None) -> list[Filter]:
    if environment is None:
        return []
    return [Filter(field=src.fields["environment"], prop=None, op="eq", value=environment)]


__all__ = [
    "ANY_EVENT",
    "COUNT_BY",
    "Step",
    "_Errors",
    "_invalid",
    "dialect",
    "entity_sql",
    "environment_filter",
    "parse_count_by",
    "parse_environment",
    "parse_range",
    "parse_source",
    "parse_step",
    "step_match",
    "step_rows_where",
]
