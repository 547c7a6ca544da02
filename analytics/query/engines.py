"""Run a compiled query on PostgreSQL or BigQuery, under `ANALYTICS_QUERY_TIMEOUT`.

PostgreSQL: a plain `SELECT` (it takes no row locks, so ingest's INSERTs and the exporter's
`FOR UPDATE SKIP LOCKED` never wait on it) with a transaction-local `statement_timeout`, so the
server itself cancels a query that runs too long. BigQuery: the job gets the same limit as
`job_timeout_ms`, the client waits no longer, and a job still running is cancelled.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

import psycopg
import requests
from django.conf import settings
from django.db import OperationalError, connection, transaction
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from ingest.errors import ApiError

from .compiler import Compiled

logger = logging.getLogger(__name__)
POSTGRES_WORK_MEM = "64MB"
# The raw tables are weekly partitions (ingest/partitions.py). With PostgreSQL's default of 4 (disks
# that seek), a partition lying wholly inside a query's window is read by a scan of its whole heap
# rather than of its covering index, half the pages: the 30-day count by event took a third longer
# than on the unpartitioned table (bench/README.md). 1.1 is the usual value for SSDs and RAM-cached
# data, and gives the index plans back.
POSTGRES_RANDOM_PAGE_COST = "1.1"


def timeout_seconds() -> float:
    return float(settings.ANALYTICS_QUERY_TIMEOUT)


def _timed_out() -> ApiError:
    limit = timeout_seconds()
    return ApiError(
        status_code=504,
        code="query_timeout",
        message=(
            f"The query ran longer than {limit:g} s (ANALYTICS_QUERY_TIMEOUT) and was cancelled; "
            "narrow the time range, add filters or group by fewer fields."
        ),
    )


def postgres_settings() -> dict[str, str]:
    """The explorer statement's settings: the timeout, no JIT (its compile time is seconds on these
    statements), room to hash-aggregate in memory, no parallel workers (one read takes one core at
    most, so a tenant's reads, at most ANALYTICS_READS_PER_TENANT at once, cannot take them all), and
    index reads priced for SSDs (POSTGRES_RANDOM_PAGE_COST)."""
    return {
        "statement_timeout": str(max(1, int(timeout_seconds() * 1000))),
        "jit": "off",
        "work_mem": POSTGRES_WORK_MEM,
        "max_parallel_workers_per_gather": "0",
        "random_page_cost": POSTGRES_RANDOM_PAGE_COST,
    }


def postgres_settings_apply(cursor: Any, *, is_local: bool) -> None:
    """One round trip; `is_local`: for the current transaction only (the pooled connection keeps its defaults)."""
    settings_ = postgres_settings()
    calls = ", ".join("set_config(%s, %s, %s)" for _ in settings_)
    cursor.execute(f"SELECT {calls}", [v for name, value in settings_.items() for v in (name, value, is_local)])


def postgres_rows(compiled: Compiled) -> list[tuple]:
    """Rows of `compiled` on the default database, cancelled by the server after the timeout."""
    return postgres_fetch(compiled.sql, compiled.params)


def postgres_fetch(sql: str, params: list[Any]) -> list[tuple]:
    """Rows of one statement under the explorer's settings (timeout: 504)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            postgres_settings_apply(cursor, is_local=True)
            cursor.execute(sql, params)
            return cursor.fetchall()
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.QueryCanceled):
            raise _timed_out() from exc
        raise


def _parameter(name: str, type_: str, value: Any) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if type_.startswith("ARRAY<"):
        return bigquery.ArrayQueryParameter(name, type_[6:-1], value)
    return bigquery.ScalarQueryParameter(name, type_, value)


def bigquery_rows(compiled: Compiled) -> list[tuple]:
    """Rows of `compiled` on the configured BigQuery dataset; the job is cancelled after the timeout."""
    from ingest.bigquery import client_get, is_enabled

    if not is_enabled():
        raise ApiError(
            status_code=503,
            code="engine_unavailable",
            message="ANALYTICS_QUERY_ENGINE is bigquery but BIGQUERY_PROJECT is not set.",
        )
    limit = timeout_seconds()
    client = client_get()
    config = bigquery.QueryJobConfig(
        query_parameters=[_parameter(*p) for p in compiled.params],
        job_timeout_ms=max(1, int(limit * 1000)),
    )
    # The client's default retries would go on for 10 minutes: retry transient errors within the limit only.
    retry = DEFAULT_RETRY.with_timeout(limit)
    job = None
    try:
        job = client.query(compiled.sql, job_config=config, timeout=limit, retry=retry, job_retry=None)
        return [tuple(row.values()) for row in job.result(timeout=limit, retry=retry)]
    except (concurrent.futures.TimeoutError, requests.exceptions.Timeout, gexc.RetryError) as exc:
        _cancel(job)
        raise _timed_out() from exc
    except gexc.GoogleAPICallError as exc:
        if "timeout" in str(exc).lower() or isinstance(exc, gexc.DeadlineExceeded):
            _cancel(job)
            raise _timed_out() from exc
        logger.exception("BigQuery query failed")
        raise ApiError(
            status_code=502, code="engine_error", message="BigQuery could not run the query; retry later."
        ) from exc


def _cancel(job: bigquery.QueryJob | None) -> None:
    if job is None:
        return
    try:
        job.cancel(timeout=2)
    except (gexc.GoogleAPICallError, requests.exceptions.RequestException):
        logger.warning("could not cancel BigQuery job %s", job.job_id, exc_info=True)
