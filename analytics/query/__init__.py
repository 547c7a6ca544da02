"""The Event explorer's query language: validate (`validation`), compile per engine (`compiler`),
run under a timeout (`engines`). `query_run` is the one entry point the API uses."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from apps_registry.models import Application

from .accelerated import accelerated_rows
from .compiler import Engine, bucket_iso, query_compile
from .engines import bigquery_rows, postgres_rows
from .validation import Query, query_parse

__all__ = ["Query", "query_answer", "query_compile", "query_parse", "query_run"]


def engine_configured() -> Engine:
    return "bigquery" if settings.ANALYTICS_QUERY_ENGINE == "bigquery" else "postgres"


def query_run(*, app: Application, query: object, engine: Engine | None = None) -> dict[str, Any]:
    """Validate, compile and run `query` (the request's decoded JSON, any value) for `app`; the answer.

    Raises ApiError 400 (invalid query, naming the member), 504 (timeout), 502/503 (BigQuery).
    """
    return query_answer(app=app, query=query, engine=engine)[0]


def query_answer(
    *, app: Application, query: object, engine: Engine | None = None, accelerate: bool = True
) -> tuple[dict[str, Any], str]:
    """`query_run`'s answer and the path that produced it: "rollups" (analytics/query/accelerated.py,
    PostgreSQL only, when they answer exactly), "raw" or "bigquery"."""
    parsed = query_parse(query)
    engine = engine or engine_configured()
    started = time.monotonic()
    rows = accelerated_rows(app, parsed) if engine == "postgres" and accelerate else None
    path = "rollups"
    if rows is None:
        compiled = query_compile(app=app, query=parsed, engine=engine)
        rows = postgres_rows(compiled) if engine == "postgres" else bigquery_rows(compiled)
        path = "raw" if engine == "postgres" else "bigquery"
    took_ms = round((time.monotonic() - started) * 1000)
    truncated = len(rows) > parsed.limit
    columns = (["bucket"] if parsed.interval else []) + [g.name for g in parsed.group_by] + ["value"]
    return {
        "columns": columns,
        "rows": [_row(row, has_bucket=bool(parsed.interval)) for row in rows[: parsed.limit]],
        "engine": engine,
        "truncated": truncated,
        "took_ms": took_ms,
    }, path


def _row(row: tuple, *, has_bucket: bool) -> list:
    out: list = list(row)
    if has_bucket:
        out[0] = bucket_iso(out[0])
    out[-1] = int(out[-1])
    return out
