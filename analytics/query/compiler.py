"""One query, two dialects: a `Query` printed as PostgreSQL or BigQuery SQL with bound parameters.

The statement is built once, by `query_compile`, from dialect primitives (a column, a property, a
time bucket, a parameter, a prefix test...). Each dialect decides only how a primitive is spelled;
the shape of the statement (filters, grouping, ordering, the extra row that tells truncation) is
shared, so both engines answer the same question. Client values only ever become parameters.
One exception, for speed on PostgreSQL: a distinct count (users, orgs, sessions) with hour, day or
week buckets is counted bucket by bucket over a `generate_series` of the buckets (LATERAL), with
the same answer (tests/analytics/test_query_engines.py compares both engines on such ranges).

Written by hand rather than with SQLGlot: the language is a dozen constructs, the two dialects
differ mostly in parameter style (psycopg `%s` vs BigQuery `@name` with types) and in a few
functions the BigQuery emulator lacks, and both are easier to control and to read here than as
transpiler rules and post-processing.

Emulator workarounds (BigQuery SQL that real BigQuery and the emulator both accept):
- weeks starting Monday: `TIMESTAMP_TRUNC(ts, WEEK(MONDAY))` and `ISOWEEK` fail on the emulator, and its
  plain `WEEK` starts on Monday where BigQuery's starts on Sunday; so a week bucket is the day
  minus the days since Monday: `TIMESTAMP_SUB(TIMESTAMP_TRUNC(ts, DAY), INTERVAL
  MOD(EXTRACT(DAYOFWEEK FROM ts) + 5, 7) DAY)` (DAYOFWEEK: Sunday 1 ... Saturday 7 on both). Integer
  arithmetic on Unix seconds is no way out: the emulator's `DIV` returns the dividend unchanged;
- substring test: `STRPOS(x, @p) > 0` rather than `CONTAINS_SUBSTR` (which is case-insensitive
  and normalises, unlike PostgreSQL's `strpos`);
- `neq`/`not_in` are written `(x IS NULL OR x <> @p)` rather than `IS DISTINCT FROM`;
- ordering spells out `NULLS FIRST` (the engines' defaults differ), and PostgreSQL orders text
  with `COLLATE "C"` (byte order, as BigQuery does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from django.conf import settings

from apps_registry.models import Application

from .fields import Field
from .validation import Filter, Query

Engine = Literal["postgres", "bigquery"]


@dataclass
class Compiled:
    """A statement and its parameters for one engine (`params` is a list for psycopg; for BigQuery,
    a list of (name, type, value) triples: the runner makes the typed query parameters)."""

    sql: str
    params: list[Any] = field(default_factory=list)
    engine: Engine = "postgres"

    def __iter__(self) -> Iterator[Any]:
        """Lets callers unpack `sql, params = compiled`."""
        return iter((self.sql, self.params))


# Fixed-width buckets with `date_bin`: plain arithmetic on the stored timestamptz, where
# `date_trunc(unit, occurred_at AT TIME ZONE 'UTC')` converts time zones row by row (about a quarter of
# a 30-day daily count, a third of distinct users per day at 10 M events). The origin is a Monday at
# midnight UTC, so days, hours and weeks (starting Monday) fall exactly where date_trunc puts them.
# Months vary in length: date_trunc. The migration `ingest/0006_explorer_indexes` keeps statistics on
# these exact expressions (the planner then expects hundreds of groups, not one per row).
POSTGRES_BUCKETS = {
    "hour": "date_bin('1 hour'::interval, occurred_at, '2000-01-03 00:00:00+00'::timestamptz)",
    "day": "date_bin('1 day'::interval, occurred_at, '2000-01-03 00:00:00+00'::timestamptz)",
    "week": "date_bin('7 days'::interval, occurred_at, '2000-01-03 00:00:00+00'::timestamptz)",
    "month": "date_trunc('month', occurred_at AT TIME ZONE 'UTC')",
}


POSTGRES_ORIGIN = "'2000-01-03 00:00:00+00'::timestamptz"
POSTGRES_STEPS = {"hour": "'1 hour'::interval", "day": "'1 day'::interval", "week": "'7 days'::interval"}


def postgres_bucket(interval: str) -> str:
    return POSTGRES_BUCKETS[interval]


class _Dialect:
    engine: Engine

    def __init__(self) -> None:
        self.params: list[Any] = []

    def param(self, value: Any, type_: str) -> str:
        raise NotImplementedError

    def column(self, fld: Field, prop: str | None) -> str:
        raise NotImplementedError

    def bucket(self, interval: str) -> str:
        raise NotImplementedError

    def table(self, source_name: str) -> str:
        raise NotImplementedError

    def app_match(self, app: Application) -> str:
        raise NotImplementedError

    def in_list(self, expr: str, values: list, type_: str) -> str:
        raise NotImplementedError

    def starts_with(self, expr: str, value: str) -> str:
        return f"STARTS_WITH({expr}, {self.param(value, 'STRING')})"

    def contains(self, expr: str, value: str) -> str:
        return f"STRPOS({expr}, {self.param(value, 'STRING')}) > 0"

    def order_text(self, alias: str) -> str:
        return alias


class _Postgres(_Dialect):
    engine: Engine = "postgres"

    def param(self, value: Any, type_: str) -> str:
        self.params.append(value)
        return "%s"

    def column(self, fld: Field, prop: str | None) -> str:
        if prop is None:
            return fld.pg
        # Scalars only, as BigQuery's JSON_VALUE: an object or array reads as NULL.
        key = self.param(prop, "STRING")
        key2 = self.param(prop, "STRING")
        return (
            f"(CASE WHEN jsonb_typeof(properties -> {key}) IN ('string', 'number', 'boolean') "
            f"THEN properties ->> {key2} END)"
        )

    def bucket(self, interval: str) -> str:
        return postgres_bucket(interval)

    def table(self, source_name: str) -> str:
        from .fields import SOURCES

        return SOURCES[source_name].pg_table

    def app_match(self, app: Application) -> str:
        return f"application_id = {self.param(app.pk, 'INT64')}"

    def in_list(self, expr: str, values: list, type_: str) -> str:
        return f"{expr} = ANY({self.param(list(values), type_)})"

    def starts_with(self, expr: str, value: str) -> str:
        return f"starts_with({expr}, {self.param(value, 'STRING')})"

    def contains(self, expr: str, value: str) -> str:
        return f"strpos({expr}, {self.param(value, 'STRING')}) > 0"

    def order_text(self, alias: str) -> str:
        return f'{alias} COLLATE "C"'


class _BigQuery(_Dialect):
    engine: Engine = "bigquery"

    def param(self, value: Any, type_: str) -> str:
        name = f"p{len(self.params)}"
        self.params.append((name, type_, value))
        return f"@{name}"

    def column(self, fld: Field, prop: str | None) -> str:
        if prop is None:
            return fld.bq
        return f"JSON_VALUE(properties, '$.{prop}')"  # `prop` matched PROPERTY_KEY: letters, digits, _

    def bucket(self, interval: str) -> str:
        if interval == "week":
            return (
                "TIMESTAMP_SUB(TIMESTAMP_TRUNC(occurred_at, DAY), "
                "INTERVAL MOD(EXTRACT(DAYOFWEEK FROM occurred_at) + 5, 7) DAY)"
            )
        return f"TIMESTAMP_TRUNC(occurred_at, {interval.upper()})"

    def table(self, source_name: str) -> str:
        from .fields import SOURCES

        return f"`{settings.BIGQUERY_PROJECT}.{settings.BIGQUERY_DATASET}.{SOURCES[source_name].bq_table}`"

    def app_match(self, app: Application) -> str:
        return f"app_uuid = {self.param(str(app.uuid), 'STRING')}"

    def in_list(self, expr: str, values: list, type_: str) -> str:
        return f"{expr} IN UNNEST({self.param(list(values), 'ARRAY<' + type_ + '>')})"


def _filter_sql(d: _Dialect, flt: Filter) -> str:
    def expr() -> str:
        # Rendered afresh at each use: a property's key is a parameter, one per occurrence.
        return d.column(flt.field, flt.prop)

    type_ = "FLOAT64" if flt.field.kind == "number" else "STRING"
    if flt.op == "is_set":
        return f"{expr()} IS NOT NULL"
    if flt.op == "is_not_set":
        return f"{expr()} IS NULL"
    if flt.op == "eq":
        return f"{expr()} = {d.param(flt.value, type_)}"
    if flt.op == "neq":  # an unset field is "not equal" too
        return f"({expr()} IS NULL OR {expr()} <> {d.param(flt.value, type_)})"
    if flt.op == "in":
        return d.in_list(expr(), flt.value, type_)  # type: ignore[arg-type]
    if flt.op == "not_in":
        return f"({expr()} IS NULL OR NOT ({d.in_list(expr(), flt.value, type_)}))"  # type: ignore[arg-type]
    if flt.op == "prefix":
        return d.starts_with(expr(), flt.value)  # type: ignore[arg-type]
    if flt.op == "contains":
        return d.contains(expr(), flt.value)  # type: ignore[arg-type]
    raise ValueError(flt.op)  # unreachable: validation admits only the ops above


def query_compile(*, app: Application, query: Query, engine: Engine) -> Compiled:
    """The statement answering `query` for `app` on `engine`; asks for `limit + 1` rows."""
    d: _Dialect = _Postgres() if engine == "postgres" else _BigQuery()
    measure = query.source.measures[query.measure]
    # Parameters are numbered by position: each piece is rendered in the order it appears in the SQL.
    per_bucket = engine == "postgres" and measure is not None and query.interval in POSTGRES_STEPS
    if per_bucket:
        # Distinct values bucket by bucket: one small hash table per bucket (a day's ~10 k users stay in
        # the CPU cache) instead of one over every (bucket, value) pair of the range (300 k pairs, 70 MB
        # at 10 M events, where each of 3.3 M rows is a cache miss). Each bucket is an index range scan.
        step = POSTGRES_STEPS[query.interval]  # type: ignore[index]
        series = (
            f"generate_series(date_bin({step}, {d.param(query.start, 'TIMESTAMP')}::timestamptz, {POSTGRES_ORIGIN}), "
            f"{d.param(query.end, 'TIMESTAMP')}::timestamptz - '1 microsecond'::interval, {step}) AS b(bucket)"
        )
    select: list[str] = []
    keys: list[str] = []
    order: list[str] = []
    if query.interval:
        if not per_bucket:  # else the bucket comes from the series
            select.append(f"{d.bucket(query.interval)} AS bucket")
        keys.append("bucket")
        order.append("bucket")
    for i, group in enumerate(query.group_by):
        select.append(f"{d.column(group.field, group.prop)} AS g{i}")
        keys.append(f"g{i}")
    select.append(f"{(measure.pg if engine == 'postgres' else measure.bq) if measure else 'NULL'} AS m")
    where = [d.app_match(app)]
    if per_bucket:
        where += [
            f"occurred_at >= greatest(b.bucket, {d.param(query.start, 'TIMESTAMP')}::timestamptz)",
            f"occurred_at < least(b.bucket + {step}, {d.param(query.end, 'TIMESTAMP')}::timestamptz)",
        ]
    else:
        where += [
            f"occurred_at >= {d.param(query.start, 'TIMESTAMP')}",
            f"occurred_at < {d.param(query.end, 'TIMESTAMP')}",
        ]
    if query.source.pg_only_consented:
        where.append("consent_analytics")  # events without analytics consent are never queried
    where += [_filter_sql(d, flt) for flt in query.filters]
    order.append("value DESC")
    for i, group in enumerate(query.group_by):
        alias = f"g{i}" if group.field.kind == "number" else d.order_text(f"g{i}")
        order.append(f"{alias} ASC NULLS FIRST")
    limit = int(query.limit) + 1  # a validated integer, written as a literal (BigQuery wants a constant)
    rows = f"SELECT {', '.join(select)} FROM {d.table(query.source.name)} WHERE {' AND '.join(where)}"  # noqa: S608 (whitelisted SQL; values are parameters)
    if per_bucket:
        groups = keys[1:]
        rows = f"SELECT DISTINCT {', '.join([*groups, 'm'])} FROM ({rows}) AS r WHERE m IS NOT NULL"  # noqa: S608
        sql = (
            f"SELECT {', '.join(['b.bucket', *(f'd.{g}' for g in groups), 'COUNT(*) AS value'])} "  # noqa: S608
            f"FROM {series} CROSS JOIN LATERAL ({rows}) AS d "
            f"GROUP BY {', '.join(['b.bucket', *(f'd.{g}' for g in groups)])} ORDER BY {', '.join(order)} LIMIT {limit}"
        )
        return Compiled(sql=sql, params=d.params, engine=engine)
    if measure is not None:
        # Distinct values per group in two steps (distinct pairs, then a count): unlike COUNT(DISTINCT),
        # PostgreSQL can hash-aggregate this in parallel instead of sorting every row of the range.
        rows = f"SELECT DISTINCT {', '.join([*keys, 'm'])} FROM ({rows}) AS r WHERE m IS NOT NULL"  # noqa: S608
    sql = (
        f"SELECT {', '.join([*keys, 'COUNT(*) AS value'])} FROM ({rows}) AS q"  # noqa: S608 (as above)
        + (f" GROUP BY {', '.join(keys)}" if keys else "")
        + f" ORDER BY {', '.join(order)} LIMIT {limit}"
    )
    return Compiled(sql=sql, params=d.params, engine=engine)


def bucket_iso(value: datetime) -> str:
    """A bucket as ISO 8601 UTC (aware UTC from date_bin and BigQuery, naive UTC from a month's date_trunc)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat() + "Z"
