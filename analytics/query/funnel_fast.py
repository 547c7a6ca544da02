"""Funnels on PostgreSQL from `analytics_funnelevent`, the fold's narrow copy of counted events.

The raw statement reads every row of the range from `ingest_event` (3.3 M index entries for 30
days at 10 M events; by orgs a 5 GB table scan, `customer_org_id` not being in the covering index)
and sorts 64-byte user hashes. An exact window needs every event time per entity and step, so no
per-day rollup can answer; the fold keeps one narrow row per counted event instead (models.FunnelEvent),
and a step here is one index-only range scan of its own rows (application, source, name,
occurred_us), with the entity as a 4-byte dense id. The attempts, the best attempt per entity, the
counts and the medians are the raw path's own CTEs (`funnel.attempts_ctes`), so both count by the
same rules; tests/analytics/test_funnel_fast.py checks that they agree.

Taken only when the answer is provably the raw one (`eligible`), else the raw statement runs:
- steps without filters (the table holds the name, environment and entity only), no breakdown;
- `environment` unset or a named one (the table keeps each row's own environment, '' for none,
  and '' is never a named environment);
- `from` after the company's retention horizon, as the rollup paths (accelerated.py), with their
  known gap; `funnel_events_prune` (analytics/funnel_events.py) deletes rows older than that.
Rows stored but not folded yet are read from the raw table in the same statement (one snapshot:
the fold deletes their queue entries and writes their narrow rows in one transaction, so each event
is seen once), their keys mapped to dense ids, a key with none yet to an id below 0 of its own.
BigQuery keeps the raw statement: it has no such table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings

from apps_registry.models import Application

from .accelerated import _MEASURE_KEY, _RAW, horizon, unfolded_where
from .compiler import Compiled, _Postgres

if TYPE_CHECKING:
    from .funnel import Funnel

# Per count_by, the narrow table's entity column.
_ENTITY_COLUMN = {"users": "user_dense", "orgs": "org_dense"}
_SOURCE_ID = {"events": 1, "sdk_events": 2}  # FoldQueue.SOURCE_EVENTS / SOURCE_SDK_EVENTS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def eligible(app: Application, f: Funnel) -> bool:
    """Whether analytics_funnelevent answers `f` exactly (see the module docstring)."""
    if not settings.ANALYTICS_FUNNEL_FAST_PATH:
        return False
    if (f.source.name, f.count_by) not in _MEASURE_KEY or f.count_by not in _ENTITY_COLUMN:
        return False
    if f.breakdown is not None or any(step.filters for step in f.steps):
        return False
    return f.start > horizon(app)


def micros(value: datetime) -> int:
    """`value` in microseconds since 1970, exactly as the fold stores `occurred_us` (EXTRACT(EPOCH) x 10^6)."""
    return (value - EPOCH) // timedelta(microseconds=1)


def _micros(expr: str) -> str:
    return f"(EXTRACT(EPOCH FROM {expr}) * 1000000)::bigint"


def _entities_sql(d: _Postgres, app: Application, f: Funnel) -> list[str]:
    """CTEs ending in `best` (one row per entity: e, g, depth, t1..tn), as the raw path's, plus `qn`
    (the not-yet-numbered keys of unfolded rows and their ids below 0)."""
    from .funnel import attempts_ctes

    source = f.source.name
    table, name_expr, _queue_source, consent = _RAW[source]
    key, kind, _bitmap = _MEASURE_KEY[(source, f.count_by)]
    column = _ENTITY_COLUMN[f.count_by]
    last = f.end + timedelta(seconds=f.window_seconds)  # later steps may fall one window after `to`
    names = sorted({step.event for step in f.steps})
    unfolded, unfolded_params = unfolded_where("e", source)
    d.params.extend(unfolded_params)
    queued = (
        f"q AS (SELECT {name_expr} AS name, e.occurred_at, {key} AS k FROM {table} e WHERE {unfolded}"  # noqa: S608 (from code)
        f" AND e.application_id = {d.param(app.pk, 'INT64')}"
        f" AND e.occurred_at >= {d.param(f.start, 'TIMESTAMP')} AND e.occurred_at < {d.param(last, 'TIMESTAMP')}"
        f" AND {name_expr} = ANY({d.param(names, 'STRING')}){consent} AND {key} IS NOT NULL"
    )
    if f.environment is not None:
        queued += f" AND e.environment = {d.param(f.environment, 'STRING')}"
    ctes = [
        queued + ")",
        "qd AS (SELECT q.name, q.occurred_at, q.k, d.dense FROM q LEFT JOIN analytics_denseid d"  # noqa: S608
        f" ON d.application_id = {d.param(app.pk, 'INT64')} AND d.kind = {d.param(kind, 'INT64')} AND d.key = q.k)",
        "qn AS (SELECT k, -ROW_NUMBER() OVER (ORDER BY k) AS neg"
        " FROM (SELECT DISTINCT k FROM qd WHERE dense IS NULL) x)",
        "qe AS (SELECT qd.name, qd.occurred_at, COALESCE(qd.dense::bigint, qn.neg) AS e"
        " FROM qd LEFT JOIN qn ON qn.k = qd.k)",
    ]
    for i, step in enumerate(f.steps, start=1):
        end = f.end if i == 1 else last
        narrow = (
            f"SELECT {column}::bigint AS e, NULL AS g, occurred_us AS us FROM analytics_funnelevent"  # noqa: S608
            f" WHERE application_id = {d.param(app.pk, 'INT64')} AND source = {d.param(_SOURCE_ID[source], 'INT64')}"
            f" AND name = {d.param(step.event, 'STRING')} AND occurred_us >= {d.param(micros(f.start), 'INT64')}"
            f" AND occurred_us < {d.param(micros(end), 'INT64')} AND {column} IS NOT NULL"
        )
        if f.environment is not None:
            narrow += f" AND environment = {d.param(f.environment, 'STRING')}"
        ctes.append(
            f"s{i} AS ({narrow} UNION ALL SELECT e, NULL, {_micros('occurred_at')} FROM qe"  # noqa: S608
            f" WHERE name = {d.param(step.event, 'STRING')} AND occurred_at < {d.param(end, 'TIMESTAMP')})"
        )
    return ctes + attempts_ctes(d, f, lambda k: f"s{k}", gkind="number", only_live=True)


def funnel_fast_compile(*, app: Application, funnel: Funnel) -> Compiled:
    """The raw statement's rows (kind, g, grank, step, count, median_lo_us, median_hi_us) from the narrow table."""
    from .funnel import counts_sql

    d = _Postgres()
    return Compiled(sql=counts_sql(d, _entities_sql(d, app, funnel), funnel), params=d.params, engine="postgres")


def dropoff_fast_compile(*, app: Application, funnel: Funnel, step: int) -> Compiled:
    """The raw drop-off's rows (entity key, t1, t(step-1)), dense ids mapped back to keys."""
    from .funnel import MAX_DROPOFF

    d = _Postgres()
    ctes = _entities_sql(d, app, funnel)
    _key, kind, _bitmap = _MEASURE_KEY[(funnel.source.name, funnel.count_by)]
    sql = (
        "WITH " + ", ".join(ctes) + f" SELECT COALESCE(d.key, qn.k) AS e, best.t1, best.t{int(step) - 1}"  # noqa: S608
        f" FROM best LEFT JOIN analytics_denseid d ON d.application_id = {d.param(app.pk, 'INT64')}"
        f" AND d.kind = {d.param(kind, 'INT64')} AND d.dense = best.e LEFT JOIN qn ON qn.neg = best.e"
        f' WHERE best.depth = {int(step) - 1} ORDER BY COALESCE(d.key, qn.k) COLLATE "C" LIMIT {MAX_DROPOFF + 1}'
    )
    return Compiled(sql=sql, params=d.params, engine="postgres")
