"""The explorer's fast path on PostgreSQL: a query the rollups answer exactly is read from them.

A 30-day daily count at 10 M events scans ~3 M index entries on the raw table (about 1.5 s); the
rollups (analytics/fold.py) hold the same figures as a few rows per day. The fast path is taken only
for shapes whose answer is provably the raw one (`eligible`); anything else goes raw.

- Shapes: measure events/users/orgs (sessions without a group), group by nothing or by the event
  name (NameDay), interval day/week/month or none, at most an `environment` `eq` filter (events),
  `from`/`to` on UTC midnights (the rollups are per UTC day).
- Retention: raw rows received before the company's retention cutoff may be deleted while the
  rollups keep them, so `from` must be after that cutoff (see `horizon`). Known gap: the cutoff is
  on `received_at`, the window on `occurred_at`; a row dated up to a year ahead (TS_MAX_FUTURE_SECONDS)
  and since deleted, or one deleted while the company kept fewer days than today, is still in the
  rollups. A durable record of the latest `occurred_at` retention deleted would close it.
- Events stored but not folded yet: ONE statement (so one snapshot, whatever the isolation level)
  reads the window's rollup rows and the window's raw rows not folded yet (`fold.unfolded_sql`:
  queued, or above the fold's cursor). The fold deletes queue rows and updates rollups in one
  transaction, and queues rows and moves its cursor in another, so the snapshot sees each event in
  exactly one place. Counts add; distinct sets are the rollup bitmaps' union plus the unfolded rows'
  dense ids, plus the unfolded keys that have no dense id yet (counted as a set of their own).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.utils import timezone
from pyroaring import BitMap

from apps_registry.models import Application

from ..fold import unfolded_sql
from .validation import Query

DAY = timedelta(days=1)

# Per source: raw table, the rollups' event-name column, queue source id, how a measure's key is read
# from a raw row (exactly as the raw query's measure), its dense-id kind and its rollup bitmap column.
_RAW = {
    "events": ("ingest_event", "e.event", 1, ""),
    "sdk_events": ("ingest_sdkevent", "e.event_name", 2, " AND e.consent_analytics"),
}
_MEASURE_KEY = {
    ("events", "users"): ("e.user_hash", 1, "users_bm"),
    ("events", "orgs"): ("e.customer_org_id", 2, "orgs_bm"),
    ("events", "sessions"): ("e.session_id::text", 3, "sessions_bm"),
    ("sdk_events", "users"): ("COALESCE(e.user_id, e.anon_id::text)", 1, "users_bm"),
    ("sdk_events", "sessions"): ("e.session_id::text", 3, "sessions_bm"),
}
_NAME_FIELD = {"events": "event", "sdk_events": "event_name"}


def horizon(app: Application, now: datetime | None = None) -> datetime:
    """The earliest time whose raw rows retention cannot have deleted: rows received before
    `now - retention_days` may be gone (ingest/services/retention.py), rows after cannot."""
    return (now or timezone.now()) - timedelta(days=app.company.retention_days)


def _midnight(value: datetime) -> bool:
    value = value.astimezone(UTC)
    return value.time() == time(0) and value.tzinfo is not None


def eligible(app: Application, query: Query) -> str | None:
    """The environment to read ('*' = all) when the rollups answer `query` exactly, else None."""
    source = query.source.name
    if source not in _RAW or query.interval not in (None, "day", "week", "month"):
        return None
    if query.measure != "events" and (source, query.measure) not in _MEASURE_KEY:
        return None
    if query.group_by:
        if len(query.group_by) != 1 or query.measure == "sessions":
            return None
        group = query.group_by[0]
        if group.prop is not None or group.field.name != _NAME_FIELD[source]:
            return None
    environment = "*"
    if query.filters:
        flt = query.filters[0]
        if (
            len(query.filters) != 1
            or source != "events"
            or flt.field.name != "environment"
            or flt.prop is not None
            or flt.op != "eq"
            or not isinstance(flt.value, str)
            or flt.value in ("", "*")  # '' is also NULL in the rollups; '*' is their all-environments row
        ):
            return None
        environment = flt.value
    if not (_midnight(query.start) and _midnight(query.end)):
        return None
    if query.start <= horizon(app):
        return None
    return environment


def rollup_sql(
    app: Application,
    *,
    source: str,
    bitmap: str,
    start_day: date,
    end_day: date,
    environment: str,
    grouped: bool,
    name: str | None = None,
) -> tuple[str, list[Any]]:
    """Rollup rows (day, g, n, bm, k, dense) of [start_day, end_day): per name (NameDay) when `grouped`
    or a `name` is given (only that name), else the day's totals (DailyTotal)."""
    params: list[Any] = []
    if grouped or name is not None:
        sql = (
            f"SELECT day, event AS g, events AS n, {bitmap} AS bm, NULL::varchar AS k, NULL::int AS dense"  # noqa: S608 (names from code)
            " FROM analytics_nameday WHERE application_id = %s AND source = %s AND day >= %s AND day < %s"
        )
        params += [app.pk, source, start_day, end_day]
        if name is not None:
            sql += " AND event = %s"
            params.append(name)
        if environment != "*":
            sql += " AND environment = %s"
            params.append(environment)
        return sql, params
    sql = (
        f"SELECT day, NULL::varchar AS g, events AS n, {bitmap} AS bm, NULL::varchar AS k, NULL::int AS dense"  # noqa: S608
        " FROM analytics_dailytotal WHERE application_id = %s AND source = %s AND environment = %s"
        " AND day >= %s AND day < %s"
    )
    return sql, [app.pk, source, environment, start_day, end_day]


def unfolded_where(alias: str, source: str) -> tuple[str, list[Any]]:
    """The condition that row `alias` of `source`'s raw table is stored but not folded yet.

    What every fast path (this module, retention_rollups.py, funnel_fast.py) reads, in the same
    statement as what the fold wrote: the fold's own definition (queued, or above its cursor)."""
    return unfolded_sql(_RAW[source][2], alias), []


def queued_sql(
    app: Application,
    *,
    source: str,
    measure: str,
    start: datetime,
    end: datetime,
    environment: str,
    grouped: bool,
    name: str | None = None,
) -> tuple[str, list[Any]]:
    """The raw rows of [start, end) not folded yet, as rollup rows (day, g, n, NULL, k, dense):
    grouped by day, name (when `grouped`) and key, with the key's dense id when it has one."""
    table, name_expr, _queue_source, consent = _RAW[source]
    key = _MEASURE_KEY.get((source, measure))
    g = name_expr if grouped else "NULL::varchar"
    k = key[0] if key else "NULL::varchar"
    unfolded, params = unfolded_where("e", source)
    queued = (
        f"SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, {g} AS g, {k} AS k, count(*) AS n"  # noqa: S608
        f" FROM {table} e WHERE {unfolded}"
        f" AND e.application_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s{consent}"
    )
    params += [app.pk, start, end]
    if name is not None:
        queued += f" AND {name_expr} = %s"
        params.append(name)
    if environment != "*":
        queued += " AND e.environment = %s"
        params.append(environment)
    queued += " GROUP BY 1, 2, 3"
    if not key:
        return f"SELECT r.day, r.g, r.n, NULL::bytea, NULL::varchar, NULL::int FROM ({queued}) r", params  # noqa: S608
    sql = (
        f"SELECT r.day, r.g, r.n, NULL::bytea, r.k, d.dense FROM ({queued}) r"  # noqa: S608
        " LEFT JOIN analytics_denseid d ON d.application_id = %s AND d.kind = %s AND d.key = r.k"
        " WHERE r.k IS NOT NULL"
    )
    return sql, [*params, app.pk, key[1]]


def _sql(app: Application, query: Query, environment: str) -> tuple[str, list[Any]]:
    """One statement: the window's rollup rows, then its queued raw rows grouped by day, name and key."""
    source = query.source.name
    grouped = bool(query.group_by)
    key = _MEASURE_KEY.get((source, query.measure))
    rollup, params = rollup_sql(
        app,
        source=source,
        bitmap=key[2] if key else "NULL::bytea",
        start_day=query.start.astimezone(UTC).date(),
        end_day=query.end.astimezone(UTC).date(),
        environment=environment,
        grouped=grouped,
    )
    remainder, more = queued_sql(
        app, source=source, measure=query.measure, start=query.start, end=query.end, environment=environment,
        grouped=grouped,
    )  # fmt: skip
    return f"{rollup} UNION ALL {remainder}", [*params, *more]


def _bucket(day: date, interval: str | None) -> datetime | None:
    if interval is None:
        return None
    if interval == "week":
        day -= timedelta(days=day.weekday())  # weeks start Monday
    elif interval == "month":
        day = day.replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def rows_from(query: Query, fetched: list[tuple]) -> list[tuple]:
    """The raw path's rows (bucket, group, value), ordered as its ORDER BY, at most limit + 1."""
    distinct = query.measure != "events"
    counts: dict[tuple, int] = {}
    maps: dict[tuple, BitMap] = {}
    new_keys: dict[tuple, set[str]] = {}
    for day, g, n, bm, k, dense in fetched:
        group = (_bucket(day, query.interval), g) if query.group_by else (_bucket(day, query.interval),)
        if not distinct:
            counts[group] = counts.get(group, 0) + n
            continue
        bitmap = maps.get(group)
        if bitmap is None:
            bitmap = maps[group] = BitMap()
        if bm:
            bitmap |= BitMap.deserialize(bytes(bm))
        elif k is not None:
            if dense is not None:
                bitmap.add(dense)
            else:
                new_keys.setdefault(group, set()).add(k)
    if distinct:
        counts = {group: len(bitmap) + len(new_keys.get(group, ())) for group, bitmap in maps.items()}
    if not query.interval and not query.group_by:
        return [(counts.get((None,), 0),)]  # the raw statement always answers one row here
    out = []
    for group, value in counts.items():
        if value == 0:  # the raw query lists only groups with a counted row
            continue
        out.append((*(group if query.interval else group[1:]), value))

    def order(row: tuple) -> tuple:
        return (row[0], -row[-1], row[1]) if query.interval and query.group_by else (row[0], -row[-1])

    if query.interval:
        out.sort(key=order)
    else:
        out.sort(key=lambda row: (-row[-1], row[0]))  # value DESC, then the name (code points = COLLATE "C")
    return out[: int(query.limit) + 1]


def accelerated_rows(app: Application, query: Query) -> list[tuple] | None:
    """The answer's rows from the rollups, or None when the shape must go raw."""
    from .engines import postgres_fetch

    environment = eligible(app, query)
    if environment is None:
        return None
    sql, params = _sql(app, query, environment)
    return rows_from(query, postgres_fetch(sql, params))
