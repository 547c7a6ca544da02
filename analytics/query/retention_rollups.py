"""Retention on PostgreSQL from the rollups: the per-day user/org bitmaps the fold maintains.

The raw statement hashes every return event of the cohorts' periods (at 1 M events, 6 to 9 s for 12
weeks); the rollups hold the same sets as one bitmap per (name, environment, day) in
`analytics_nameday` and per (environment, day) in `analytics_dailytotal` (any event). Per period P,
S(P) = the start event's entities of P's days in [from, to); the cohort of P is S(P) minus every
earlier period's S (an entity's cohort is its first start event's period); retained in period P + n
= |cohort(P) ∩ R(P + n)|, R being the return event's entities of that period. The rows are the raw
statement's (cohort, return period or None, count), so `retention_run` shapes both alike.

Taken only when the answer is provably the raw one (`eligible`), else the raw statement runs:
- start and return events without filters (the rollups are per name only), `environment` unset or a
  named one (`*` is the rollups' all-environments row; `''` is unset already);
- `from`/`to` on UTC midnights: the rollups are per UTC day, and every period (day, Monday week,
  month) is whole days, so the return periods are whole days too;
- `from` after the company's retention horizon, as the explorer's rollup path (accelerated.py, with its known gap).
Rows stored but not folded yet (queued, or above the fold cursor) are read in the same statement, as the explorer does;
their keys without a dense id yet get ids above every dense id (int4), one per key.
BigQuery keeps the raw statement: it has no rollups.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from pyroaring import BitMap

from apps_registry.models import Application

from .accelerated import _MEASURE_KEY, _midnight, horizon, queued_sql, rollup_sql
from .sequences import ANY_EVENT, Step

if TYPE_CHECKING:
    from .retention import Retention

NEW_KEY_IDS = 2**31  # dense ids are int4: a not-yet-numbered key gets an id from here


def eligible(app: Application, r: Retention) -> str | None:
    """The environment to read ('*' = all) when the rollups answer `r` exactly, else None."""
    if (r.source.name, r.count_by) not in _MEASURE_KEY or r.start.filters or r.ret.filters:
        return None
    if r.environment == "*":  # the rollups' all-environments row, where the raw filter matches none
        return None
    if not (_midnight(r.start_at) and _midnight(r.end_at)) or r.start_at <= horizon(app):
        return None
    return r.environment or "*"


def _part(
    app: Application, r: Retention, step: Step, start: datetime, end: datetime, environment: str
) -> tuple[str, list]:
    """One step's per-day rows in [start, end): its rollup rows, then its queued raw rows."""
    name = None if step.event == ANY_EVENT else step.event
    rollup, params = rollup_sql(
        app,
        source=r.source.name,
        bitmap=_MEASURE_KEY[(r.source.name, r.count_by)][2],
        start_day=start.astimezone(UTC).date(),
        end_day=end.astimezone(UTC).date(),
        environment=environment,
        grouped=False,
        name=name,
    )
    queued, more = queued_sql(
        app, source=r.source.name, measure=r.count_by, start=start, end=end, environment=environment,
        grouped=False, name=name,
    )  # fmt: skip
    return f"{rollup} UNION ALL {queued}", [*params, *more]


def retention_rollup_rows(
    app: Application, r: Retention, returns: tuple[datetime, datetime]
) -> list[tuple[datetime, datetime | None, int]] | None:
    """The raw statement's rows (cohort, return period or None for the size, entities), or None when
    `r` must go raw. `returns` is the raw statement's return range (whole periods)."""
    from .engines import postgres_fetch
    from .retention import period_add, period_start

    environment = eligible(app, r)
    if environment is None:
        return None
    starts_sql, starts_params = _part(app, r, r.start, r.start_at, r.end_at, environment)
    returns_sql, returns_params = _part(app, r, r.ret, *returns, environment)
    fetched = postgres_fetch(
        f"SELECT 0, s.* FROM ({starts_sql}) s UNION ALL SELECT 1, s.* FROM ({returns_sql}) s",  # noqa: S608 (from code)
        [*starts_params, *returns_params],
    )
    new_ids: dict[str, int] = {}
    sets: tuple[dict[datetime, BitMap], dict[datetime, BitMap]] = ({}, {})
    for part, day, _g, _n, bm, k, dense in fetched:
        entities = sets[part].setdefault(period_start(_day(day), r.period), BitMap())
        if bm:
            entities |= BitMap.deserialize(bytes(bm))
        elif dense is not None:
            entities.add(dense)
        elif k is not None:
            entities.add(new_ids.setdefault(k, NEW_KEY_IDS + len(new_ids)))
    starts, returned = sets
    seen = BitMap()
    rows: list[tuple[datetime, datetime | None, int]] = []
    for cohort_start in sorted(starts):
        cohort = starts[cohort_start] - seen
        seen |= starts[cohort_start]
        if not cohort:
            continue
        rows.append((cohort_start, None, len(cohort)))
        for n in range(1, r.periods + 1):
            later = period_add(cohort_start, r.period, n)
            kept = cohort.intersection_cardinality(returned[later]) if later in returned else 0
            if kept:
                rows.append((cohort_start, later, kept))
    return rows


def _day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
