"""Funnels: where do users (or organizations) drop out of a sequence of events?

Semantics (README "Funnels"): an entity reaches step k when it has events matching steps 1..k at
times t1 ≤ t2 ≤ … ≤ tk with tk - t1 ≤ window and t1 in [from, to). Equal timestamps count as in
order (one event may satisfy two consecutive identical steps). Each step-1 event starts an attempt;
an attempt follows the earliest matching event of each next step (earliest is never worse: it
leaves the most room for the steps after it). An entity counts once, for the furthest step any of
its attempts reached; its times (for the medians) and its breakdown value (taken from the first
step's row) come from the earliest attempt that got that far.

One statement per engine, built from the explorer's dialect primitives: one scan of the range's rows
flagged per step (`ev`), attempts extended step by step (a1..an: a running MIN window over the
entity's attempts and the step's events, linear where a join was attempts x events per entity: by
orgs, 2.5 s to 0.8 s at 1 M events), the best attempt per entity (ROW_NUMBER),
then counts and exact medians (ROW_NUMBER/COUNT windows: both engines, no percentile functions,
which differ). The median is computed in Python from the two middle values the SQL returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apps_registry.models import Application

from .compiler import Compiled, _Dialect
from .engines import bigquery_rows, postgres_fetch
from .fields import PROPERTY_PREFIX, Field, Source
from .funnel_fast import dropoff_fast_compile, funnel_fast_compile
from .funnel_fast import eligible as fast_eligible
from .sequences import (
    ANY_EVENT,
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
    step_match,
    step_rows_where,
)
from .validation import _field

MIN_STEPS = 2
MAX_STEPS = 10
MIN_WINDOW = 60
MAX_WINDOW = 90 * 86400
DEFAULT_WINDOW = 86400
MAX_GROUPS = 25
MAX_DROPOFF = 1000
KEYS = {"source", "steps", "window_seconds", "count_by", "from", "to", "breakdown", "environment"}


@dataclass(frozen=True)
class Funnel:
    source: Source
    steps: list[Step]
    window_seconds: int
    count_by: str
    start: datetime
    end: datetime
    breakdown: tuple[Field, str | None] | None  # (field, property key)
    breakdown_name: str | None
    environment: str | None


def funnel_parse(raw: object, *, extra_keys: frozenset[str] = frozenset()) -> Funnel:
    """Validate a funnel query (decoded JSON); ApiError 400 listing each offending member."""
    errors = _Errors()
    if not isinstance(raw, dict):
        errors.add("", "The query must be a JSON object.")
        raise _invalid(errors)
    for key in sorted(set(raw) - KEYS - extra_keys, key=str):
        errors.add(str(key), "Unknown member.")
    src = parse_source(raw, errors)
    count_by = parse_count_by(raw, src, errors)
    start, end = parse_range(raw, errors)
    window = raw.get("window_seconds", DEFAULT_WINDOW)
    if window is None:
        window = DEFAULT_WINDOW
    if isinstance(window, bool) or not isinstance(window, int) or not MIN_WINDOW <= window <= MAX_WINDOW:
        errors.add("window_seconds", f"Must be an integer from {MIN_WINDOW} to {MAX_WINDOW} (90 days).")
    steps: list[Step] = []
    raw_steps = raw.get("steps")
    if "steps" not in raw:
        errors.add("steps", "Required.")
    elif not isinstance(raw_steps, list) or not MIN_STEPS <= len(raw_steps) <= MAX_STEPS:
        errors.add("steps", f"Must be a list of {MIN_STEPS} to {MAX_STEPS} steps.")
    else:
        event_key = "event"
        for i, item in enumerate(raw_steps):
            step = parse_step(item, src, f"steps[{i}]", errors, name_key=event_key)
            if step is not None:
                steps.append(step)
    breakdown = None
    breakdown_name = None
    if raw.get("breakdown") is not None:
        breakdown = _field(raw.get("breakdown"), src, "breakdown", errors)
        breakdown_name = raw["breakdown"] if breakdown else None
    environment = parse_environment(raw, src, errors)
    if errors.details or src is None or start is None or end is None:
        raise _invalid(errors)
    return Funnel(
        source=src,
        steps=steps,
        window_seconds=window,
        count_by=count_by,
        start=start,
        end=end,
        breakdown=breakdown,
        breakdown_name=breakdown_name,
        environment=environment,
    )


def _micros(d: _Dialect, expr: str) -> str:
    if d.engine == "postgres":
        return f"(EXTRACT(EPOCH FROM {expr}) * 1000000)::bigint"
    return f"UNIX_MICROS({expr})"


def _order_text(d: _Dialect, expr: str, kind: str) -> str:
    return d.order_text(expr) if kind == "string" else expr


def _entities_sql(d: _Dialect, app: Application, f: Funnel) -> list[str]:
    """CTEs ending in `best`: one row per entity (e, g, depth, t1..tn) for its best attempt."""
    n = len(f.steps)
    env = environment_filter(f.source, f.environment)
    group = "NULL"
    if f.breakdown is not None:
        group = d.column(*f.breakdown)
        if f.breakdown[0].kind == "number" and d.engine == "postgres":
            group = f"({group})::float8"
    # One scan for every step (one pass over the range's index entries, not one per step): a row's
    # flags say which steps it matches; later steps may fall up to one window after `to`.
    flags = []
    for k, step in enumerate(f.steps, start=1):
        match = step_match(d, src=f.source, step=Step(event=step.event, filters=[*step.filters, *env]))
        if k == 1:
            match += f" AND occurred_at < {d.param(f.end, 'TIMESTAMP')}"
        flags.append(f"({match}) AS m{k}")
    where = step_rows_where(
        d,
        app=app,
        src=f.source,
        step=Step(ANY_EVENT),
        count_by=f.count_by,
        start=f.start,
        end=f.end + timedelta(seconds=f.window_seconds),
    )
    any_step = " OR ".join(f"m{k}" for k in range(1, n + 1))
    ctes = [
        f"ev AS (SELECT * FROM (SELECT {entity_sql(d, f.source, f.count_by)} AS e, "  # noqa: S608 (whitelisted SQL; values are parameters)
        f"{_micros(d, 'occurred_at')} AS us, {group} AS g, {', '.join(flags)} FROM {d.table(f.source.name)} "
        f"WHERE {where}) AS r WHERE {any_step})",
    ]
    gkind = f.breakdown[0].kind if f.breakdown else "number"
    return ctes + attempts_ctes(d, f, lambda k: f"ev WHERE m{k}", gkind=gkind)


def attempts_ctes(
    d: _Dialect, f: Funnel, rows: Callable[[int], str], *, gkind: str, only_live: bool = False
) -> list[str]:
    """CTEs a1 .. an, ranked, best over step k's rows `SELECT e, g, us FROM {rows(k)}` (e: the
    entity, g: the breakdown value of a step-1 row, us: microseconds). The raw path and the fast
    path (funnel_fast.py) share them, so both count by the same rules. `only_live`: step k reads
    only entities with an attempt that reached step k - 1 (exact: the others' attempts cannot move);
    the fast path uses it."""
    n = len(f.steps)
    ctes = [f"a1 AS (SELECT e, g, us AS t1 FROM {rows(1)} GROUP BY e, g, us)"]  # noqa: S608 (from code)
    prev_cols = ["e", "g", "t1"]
    null = "CAST(NULL AS INT64)" if d.engine == "bigquery" else "NULL::bigint"
    for k in range(2, n + 1):
        # Step k of an attempt is the entity's first step-k event at or after its step k-1 (the
        # earliest leaves the most room for the next steps): a running MIN over the entity's attempts
        # and step-k events in descending time, a step-k event before an attempt at the same time
        # (equal timestamps are in order). Linear in rows, where a join is attempts x events per
        # entity (an org's hundreds of events a day). If that event is past the window, so is any.
        cols = ", ".join(prev_cols)
        blanks = ", ".join(["e", "NULL", *([null] * (k - 1))])
        window_us = d.param(f.window_seconds * 1_000_000, "INT64")
        live = f" WHERE e IN (SELECT e FROM a{k - 1} WHERE t{k - 1} IS NOT NULL)" if only_live else ""  # noqa: S608
        ctes.append(
            f"c{k} AS (SELECT {cols}, t{k - 1} AS pos, 1 AS kind, {null} AS us FROM a{k - 1} "  # noqa: S608
            f"UNION ALL SELECT {blanks}, us, 0, us FROM (SELECT e, us FROM {rows(k)}) AS s{live})"
        )
        ctes.append(
            f"n{k} AS (SELECT {cols}, kind, MIN(us) OVER (PARTITION BY e ORDER BY pos DESC, kind "  # noqa: S608
            f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS nxt FROM c{k})"
        )
        ctes.append(
            f"a{k} AS (SELECT {cols}, CASE WHEN t{k - 1} IS NOT NULL AND nxt - t1 <= {window_us} THEN nxt END "  # noqa: S608
            f"AS t{k} FROM n{k} WHERE kind = 1)"
        )
        prev_cols.append(f"t{k}")
    depth = " + ".join(["1", *(f"CASE WHEN t{k} IS NULL THEN 0 ELSE 1 END" for k in range(2, n + 1))])
    ctes.append(
        f"ranked AS (SELECT {', '.join(prev_cols)}, {depth} AS depth, ROW_NUMBER() OVER "  # noqa: S608
        f"(PARTITION BY e ORDER BY {depth} DESC, t1 ASC, {_order_text(d, 'g', gkind)} ASC NULLS FIRST) AS rn "
        f"FROM a{n})"
    )
    ctes.append(f"best AS (SELECT {', '.join(prev_cols)}, depth FROM ranked WHERE rn = 1)")  # noqa: S608 (our aliases)
    return ctes


def funnel_compile(*, app: Application, funnel: Funnel, engine: str) -> Compiled:
    """Rows (kind, g, grank, step, count, median_lo_us, median_hi_us): kind 0 all, 1 a group, 2 other."""
    d = dialect(engine)
    sql = counts_sql(d, _entities_sql(d, app, funnel), funnel)
    return Compiled(sql=sql, params=d.params, engine=engine)  # type: ignore[arg-type]


def counts_sql(d: _Dialect, ctes: list[str], funnel: Funnel) -> str:
    """The statement over CTEs ending in `best`: counts and median bounds per (kind, group, step)."""
    engine = d.engine
    ctes = list(ctes)
    n = len(funnel.steps)
    gkind = funnel.breakdown[0].kind if funnel.breakdown else "number"
    times = ", ".join(f"t{k}" for k in range(1, n + 1))
    # BigQuery refuses to partition by FLOAT64 (the emulator does not): a number's text is as distinct.
    gkey = "CAST(g AS STRING)" if engine == "bigquery" and gkind == "number" and funnel.breakdown else "g"
    ctes.append(f"sized AS (SELECT e, g, depth, {times}, COUNT(*) OVER (PARTITION BY {gkey}) AS gn FROM best)")  # noqa: S608
    ctes.append(
        "grouped AS (SELECT sized.*, DENSE_RANK() OVER "  # noqa: S608
        f"(ORDER BY gn DESC, {_order_text(d, 'g', gkind)} ASC NULLS FIRST) AS grank FROM sized)"
    )
    families = [("0", "CASE WHEN FALSE THEN g END", "0")]  # a NULL of g's type (UNION needs one type)
    if funnel.breakdown is not None:
        families.append((
            f"CASE WHEN grank <= {MAX_GROUPS} THEN 1 ELSE 2 END",
            f"CASE WHEN grank <= {MAX_GROUPS} THEN g END",
            f"CASE WHEN grank <= {MAX_GROUPS} THEN grank ELSE {MAX_GROUPS + 1} END",
        ))  # fmt: skip
    parts = []
    for kind, g, grank in families:
        for k in range(1, n + 1):
            diff = "CAST(NULL AS INT64)" if engine == "bigquery" else "NULL::bigint"
            if k > 1:
                diff = f"t{k} - t{k - 1}"
            parts.append(
                f"SELECT {kind} AS kind, {g} AS g, {grank} AS grank, {k} AS step, {diff} AS d "  # noqa: S608
                f"FROM grouped WHERE depth >= {k}"
            )
    ctes.append("long AS (" + " UNION ALL ".join(parts) + ")")
    ctes.append(
        "numbered AS (SELECT kind, g, grank, step, d, "
        "ROW_NUMBER() OVER (PARTITION BY kind, grank, step ORDER BY d) AS rn, "
        "COUNT(*) OVER (PARTITION BY kind, grank, step) AS n FROM long)"
    )
    return (
        "WITH " + ", ".join(ctes) + " SELECT kind, MIN(g) AS g, grank, step, MAX(n) AS n, "
        "MIN(CASE WHEN 2 * rn = n OR 2 * rn = n + 1 THEN d END) AS lo, "
        "MAX(CASE WHEN 2 * rn = n + 1 OR 2 * rn = n + 2 THEN d END) AS hi "
        "FROM numbered GROUP BY kind, grank, step ORDER BY kind, grank, step"
    )


def _fetch(compiled: Compiled) -> list[tuple]:
    if compiled.engine == "postgres":
        return postgres_fetch(compiled.sql, compiled.params)
    return bigquery_rows(compiled)


def _steps(funnel: Funnel, found: dict[int, tuple[int, Any, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    first = found.get(1, (0, None, None))[0]
    previous = None
    for k, step in enumerate(funnel.steps, start=1):
        count, lo, hi = found.get(k, (0, None, None))
        median = None
        if k > 1 and lo is not None and hi is not None:
            median = round((int(lo) + int(hi)) / 2 / 1_000_000, 3)
        out.append({
            "event": step.event,
            "count": count,
            "conversion": 1.0 if k == 1 else (round(count / first, 4) if first else 0.0),
            "conversion_from_previous": 1.0 if k == 1 else (round(count / previous, 4) if previous else 0.0),
            "median_seconds": median,
        })  # fmt: skip
        previous = count
    return out


def _value(value: Any, fld: Field) -> Any:
    if value is None or fld.kind != "number":
        return value
    return float(value)


def funnel_run(*, app: Application, query: object, engine: str | None = None) -> dict[str, Any]:
    """Validate, compile and run a funnel for `app`: the answer (README "Funnels" gives its shape).

    Raises ApiError 400 (naming the member), 504 (past ANALYTICS_QUERY_TIMEOUT), 502/503 (BigQuery)."""
    return funnel_answer(app=app, query=query, engine=engine)[0]


def funnel_answer(
    *, app: Application, query: object, engine: str | None = None, accelerate: bool = True
) -> tuple[dict[str, Any], str]:
    """`funnel_run`'s answer and the path that produced it: "funnel_events" (funnel_fast.py, PostgreSQL
    only, when the fold's narrow table answers exactly), "raw" or "bigquery"."""
    from . import engine_configured

    funnel = funnel_parse(query)
    engine = engine or engine_configured()
    started = time.monotonic()
    if engine == "postgres" and accelerate and fast_eligible(app, funnel):
        compiled, path = funnel_fast_compile(app=app, funnel=funnel), "funnel_events"
    else:
        compiled, path = funnel_compile(app=app, funnel=funnel, engine=engine), _raw_path(engine)
    rows = _fetch(compiled)
    took_ms = round((time.monotonic() - started) * 1000)
    totals: dict[int, tuple[int, Any, Any]] = {}
    groups: dict[tuple[int, int], dict[str, Any]] = {}
    for kind, g, grank, step, count, lo, hi in rows:
        if kind == 0:
            totals[int(step)] = (int(count), lo, hi)
            continue
        entry = groups.setdefault((int(kind), int(grank)), {"value": g, "other": kind == 2, "found": {}})
        if kind == 1 and g is not None:
            entry["value"] = g
        entry["found"][int(step)] = (int(count), lo, hi)
    breakdown = []
    for (_kind, _rank), entry in sorted(groups.items()):
        value = "other" if entry["other"] else _value(entry["value"], funnel.breakdown[0])  # type: ignore[index]
        item: dict[str, Any] = {"value": value, "steps": _steps(funnel, entry["found"])}
        if entry["other"]:
            item["other"] = True
        breakdown.append(item)
    answer: dict[str, Any] = {"steps": _steps(funnel, totals), "breakdown": breakdown}
    if funnel.breakdown_name:
        answer["breakdown_by"] = funnel.breakdown_name
    answer.update({"engine": engine, "took_ms": took_ms})
    return answer, path


def _raw_path(engine: str) -> str:
    return "raw" if engine == "postgres" else "bigquery"


def dropoff_compile(*, app: Application, funnel: Funnel, step: int, engine: str) -> Compiled:
    """Entities whose furthest step is `step - 1`, by entity, at most MAX_DROPOFF + 1 rows."""
    d = dialect(engine)
    ctes = _entities_sql(d, app, funnel)
    last = f"t{step - 1}"
    sql = (
        "WITH " + ", ".join(ctes) + f" SELECT e, t1, {last} FROM best WHERE depth = {int(step) - 1} "  # noqa: S608
        f"ORDER BY {d.order_text('e')} LIMIT {MAX_DROPOFF + 1}"
    )
    return Compiled(sql=sql, params=d.params, engine=engine)  # type: ignore[arg-type]


def funnel_dropoff(*, app: Application, query: object, step: object, engine: str | None = None) -> dict[str, Any]:
    """Up to 1,000 entities that reached step `step - 1` but not `step` (2 ≤ step ≤ steps)."""
    return dropoff_answer(app=app, query=query, step=step, engine=engine)[0]


def dropoff_answer(
    *, app: Application, query: object, step: object, engine: str | None = None, accelerate: bool = True
) -> tuple[dict[str, Any], str]:
    """`funnel_dropoff`'s answer and its path, as `funnel_answer`."""
    from datetime import UTC
    from datetime import datetime as dt

    from . import engine_configured

    funnel = funnel_parse(query)
    errors = _Errors()
    if isinstance(step, str) and step.isdigit():
        step = int(step)
    if isinstance(step, bool) or not isinstance(step, int) or not 2 <= step <= len(funnel.steps):
        errors.add("step", f"Must be an integer from 2 to {len(funnel.steps)} (the step people did not reach).")
        raise _invalid(errors)
    engine = engine or engine_configured()
    started = time.monotonic()
    if engine == "postgres" and accelerate and fast_eligible(app, funnel):
        compiled, path = dropoff_fast_compile(app=app, funnel=funnel, step=step), "funnel_events"
    else:
        compiled, path = dropoff_compile(app=app, funnel=funnel, step=step, engine=engine), _raw_path(engine)
    rows = _fetch(compiled)
    took_ms = round((time.monotonic() - started) * 1000)

    def iso(us: int) -> str:
        return dt.fromtimestamp(int(us) / 1_000_000, tz=UTC).isoformat().replace("+00:00", "Z")

    return {
        "step": step,
        "event": funnel.steps[step - 1].event,
        "count_by": funnel.count_by,
        "entities": [{"id": e, "first_step_at": iso(t1), "last_step_at": iso(tl)} for e, t1, tl in rows[:MAX_DROPOFF]],
        "truncated": len(rows) > MAX_DROPOFF,
        "engine": engine,
        "took_ms": took_ms,
    }, path


__all__ = [
    "PROPERTY_PREFIX",
    "Funnel",
    "dropoff_answer",
    "funnel_answer",
    "funnel_compile",
    "funnel_dropoff",
    "funnel_parse",
    "funnel_run",
]
