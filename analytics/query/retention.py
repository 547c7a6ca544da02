"""Retention: do users (or organizations) come back?

Semantics (README "Retention"): an entity's cohort is the period (UTC day, week starting Monday, or
month) of its first `start_event` in [from, to); it is retained in period n (n ≥ 1) when it has a
`return_event` in the n-th period after its cohort's. Period 0 is the cohort size. A period that has
not ended yet is marked incomplete, and the average curve weighs complete periods only.

The SQL (both engines, the explorer's bucket primitives) returns cohort sizes and, per (cohort,
return period), the number of distinct entities; Python turns bucket pairs into period numbers,
which keeps the period arithmetic (weeks, months) out of the two dialects. On PostgreSQL a query the
rollups answer exactly reads them instead (retention_rollups.py: same rows, from per-day bitmaps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from apps_registry.models import Application

from .compiler import Compiled
from .engines import bigquery_rows, postgres_fetch
from .fields import Source
from .retention_rollups import retention_rollup_rows
from .sequences import (
    Step,
    _Errors,
    _invalid,
    dialect,
    entity_sql,
    environment_filter,
    parse_count_by,
    parse_environment,
    parse_range,
    parse_source,
    parse_step,
    step_rows_where,
)

PERIODS = ("day", "week", "month")
MAX_PERIODS = 52
DEFAULT_PERIODS = 8
KEYS = {"source", "start_event", "return_event", "period", "periods", "count_by", "from", "to", "environment"}


@dataclass(frozen=True)
class Retention:
    source: Source
    start: Step
    ret: Step
    period: str
    periods: int
    count_by: str
    start_at: datetime
    end_at: datetime
    environment: str | None


def _event(raw: dict, key: str, src: Source | None, errors: _Errors) -> Step | None:
    """`"name"`, `"*"`, or `{"event": name, "filters": [...]}`."""
    value = raw.get(key)
    if key not in raw:
        errors.add(key, 'Required: an event name, `*` (any event) or {"event", "filters"}.')
        return None
    if isinstance(value, str):
        value = {"event": value}
    return parse_step(value, src, key, errors, allow_any=True)


def retention_parse(raw: object) -> Retention:
    """Validate a retention query (decoded JSON); ApiError 400 listing each offending member."""
    errors = _Errors()
    if not isinstance(raw, dict):
        errors.add("", "The query must be a JSON object.")
        raise _invalid(errors)
    for key in sorted(set(raw) - KEYS, key=str):
        errors.add(str(key), "Unknown member.")
    src = parse_source(raw, errors)
    count_by = parse_count_by(raw, src, errors)
    start, end = parse_range(raw, errors)
    start_step = _event(raw, "start_event", src, errors)
    return_step = _event(raw, "return_event", src, errors)
    period = raw.get("period", "week")
    if not isinstance(period, str) or period not in PERIODS:
        errors.add("period", "Must be one of: " + ", ".join(PERIODS) + ".")
    periods = raw.get("periods", DEFAULT_PERIODS)
    if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= MAX_PERIODS:
        errors.add("periods", f"Must be an integer from 1 to {MAX_PERIODS}.")
    environment = parse_environment(raw, src, errors)
    if errors.details or src is None or start is None or end is None or start_step is None or return_step is None:
        raise _invalid(errors)
    return Retention(
        source=src,
        start=start_step,
        ret=return_step,
        period=period,
        periods=periods,
        count_by=count_by,
        start_at=start,
        end_at=end,
        environment=environment,
    )


def period_start(when: datetime, period: str) -> datetime:
    when = when.astimezone(UTC)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_add(start: datetime, period: str, n: int) -> datetime:
    if period == "day":
        return start + timedelta(days=n)
    if period == "week":
        return start + timedelta(weeks=n)
    months = start.year * 12 + start.month - 1 + n
    return start.replace(year=months // 12, month=months % 12 + 1)


def period_index(cohort: datetime, other: datetime, period: str) -> int:
    if period == "day":
        return (other - cohort).days
    if period == "week":
        return (other - cohort).days // 7
    return (other.year * 12 + other.month) - (cohort.year * 12 + cohort.month)


def _returns_range(r: Retention) -> tuple[datetime, datetime]:
    """Returns can happen from the first cohort's next period to `periods` periods after the last cohort's."""
    last_cohort = period_start(r.end_at - timedelta(microseconds=1), r.period)
    return period_add(period_start(r.start_at, r.period), r.period, 1), period_add(last_cohort, r.period, r.periods + 1)


def retention_compile(*, app: Application, retention: Retention, engine: str) -> Compiled:
    """Rows (cohort, returned_bucket_or_NULL, entities): NULL rows are the cohort sizes."""
    d = dialect(engine)
    r = retention
    env = environment_filter(r.source, r.environment)
    ent = entity_sql(d, r.source, r.count_by)
    table = d.table(r.source.name)
    bucket = d.bucket(r.period)
    start_where = step_rows_where(
        d,
        app=app,
        src=r.source,
        step=Step(r.start.event, [*r.start.filters, *env]),
        count_by=r.count_by,
        start=r.start_at,
        end=r.end_at,
    )
    returns_from, returns_to = _returns_range(r)
    return_where = step_rows_where(
        d,
        app=app,
        src=r.source,
        step=Step(r.ret.event, [*r.ret.filters, *env]),
        count_by=r.count_by,
        start=returns_from,
        end=returns_to,
    )
    sql = (
        f"WITH cohorts AS (SELECT {ent} AS e, MIN({bucket}) AS c FROM {table} WHERE {start_where} GROUP BY e), "  # noqa: S608
        # Returns joined to the (small) cohort set first: a hash join probed by the event rows, then one
        # distinct (cohort, period, entity) per return, rather than every entity's periods sorted by id.
        f"returns AS (SELECT DISTINCT k.c AS c, {bucket} AS b, k.e AS e FROM {table} "
        f"JOIN cohorts AS k ON k.e = {ent} WHERE {return_where} AND {bucket} > k.c) "
        "SELECT c, CAST(NULL AS TIMESTAMP) AS b, COUNT(*) AS n FROM cohorts GROUP BY c "
        "UNION ALL SELECT c, b, COUNT(*) AS n FROM returns GROUP BY c, b ORDER BY 1, 2"
    )
    if engine == "postgres" and r.period == "month":
        # date_trunc on a UTC wall time gives `timestamp`; keep the union's types equal.
        sql = sql.replace("CAST(NULL AS TIMESTAMP)", "CAST(NULL AS timestamp)")
    elif engine == "postgres":
        sql = sql.replace("CAST(NULL AS TIMESTAMP)", "CAST(NULL AS timestamptz)")
    return Compiled(sql=sql, params=d.params, engine=engine)  # type: ignore[arg-type]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def retention_run(*, app: Application, query: object, engine: str | None = None) -> dict[str, Any]:
    """Validate, compile and run a retention query for `app` (README "Retention" gives the shape).

    Raises ApiError 400 (naming the member), 504 (past ANALYTICS_QUERY_TIMEOUT), 502/503 (BigQuery)."""
    return retention_answer(app=app, query=query, engine=engine)[0]


def retention_answer(
    *, app: Application, query: object, engine: str | None = None, accelerate: bool = True
) -> tuple[dict[str, Any], str]:
    """`retention_run`'s answer and the path that produced it: "rollups" (retention_rollups.py,
    PostgreSQL only, when they answer exactly), "raw" or "bigquery" (no rollups there)."""
    from . import engine_configured

    r = retention_parse(query)
    engine = engine or engine_configured()
    started = time.monotonic()
    rows: list[tuple] | None = None
    if engine == "postgres" and accelerate:
        rows = retention_rollup_rows(app, r, _returns_range(r))
    path = "rollups"
    if rows is None:
        compiled = retention_compile(app=app, retention=r, engine=engine)
        rows = postgres_fetch(compiled.sql, compiled.params) if engine == "postgres" else bigquery_rows(compiled)
        path = "raw" if engine == "postgres" else "bigquery"
    took_ms = round((time.monotonic() - started) * 1000)
    now = timezone.now()
    sizes: dict[datetime, int] = {}
    retained: dict[datetime, list[int]] = {}
    for c, b, n in rows:
        cohort = _aware(c)
        if b is None:
            sizes[cohort] = int(n)
            retained.setdefault(cohort, [0] * r.periods)
            continue
        index = period_index(cohort, _aware(b), r.period)
        if 1 <= index <= r.periods:
            retained.setdefault(cohort, [0] * r.periods)[index - 1] += int(n)
    cohorts = []
    weights = [0] * r.periods
    kept = [0] * r.periods
    for cohort in sorted(sizes):
        size = sizes[cohort]
        counts = retained[cohort]
        complete = [period_add(cohort, r.period, n + 1) <= now for n in range(1, r.periods + 1)]
        for i, done in enumerate(complete):
            if done:
                weights[i] += size
                kept[i] += counts[i]
        cohorts.append({
            "start": _iso(cohort),
            "size": size,
            "retained": counts,
            "fractions": [round(n / size, 4) for n in counts],
            "complete": complete,
        })  # fmt: skip
    return {
        "period": r.period,
        "cohorts": cohorts,
        "average": [round(kept[i] / weights[i], 4) if weights[i] else None for i in range(r.periods)],
        "engine": engine,
        "took_ms": took_ms,
    }, path
