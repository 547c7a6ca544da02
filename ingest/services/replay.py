"""Re-send rows PostgreSQL calls exported to a BigQuery sink that lost them (issue 17, item 6).

After BigQuery was rebuilt from scratch (a new project, a dropped dataset, an in-memory emulator
restarted), rows marked EXPORTED are missing there and the export will never send them again: it
only sends PENDING rows. `export_replay` sends the EXPORTED rows of one table whose receive time
falls in [since, until), in id order, a chunk per insertAll call.

Exactly once is the operator's part: BigQuery drops a repeated insert id only for a short while
(about a minute, best effort; the emulator never does), so rows still present would be doubled.
Delete the range in BigQuery first. Every replayed row carries `export_batch = replay-<id>` (printed
at the start), so a replay that failed half-way can be undone with one DELETE and run again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from apps_registry.models import Application
from ingest import bigquery
from ingest.bigquery import TABLES, TableSpec
from ingest.models import ExportState
from ingest.services.export import (
    MODELS,
    _row,  # the exporter's own conversion of a row to its JSON
    export_state_q,
)

logger = logging.getLogger(__name__)

# Counting or reading a huge range must not run for ever: one statement at most this long.
REPLAY_STATEMENT_TIMEOUT_MS = 120_000


class ReplayError(Exception):
    """BigQuery refused or did not answer; what was sent before is in the message."""


@dataclass
class ReplayReport:
    table: str
    since: datetime
    until: datetime
    replay_id: str
    rows: int  # EXPORTED rows in the range (the count taken first)
    sent: int = 0
    dry_run: bool = False


def _where(spec: TableSpec, since: datetime, until: datetime) -> tuple[str, tuple]:
    """The rows of the range the export ledger calls exported, as SQL over `t` and its parameters."""
    model = MODELS[spec.name]
    exported = model.objects.filter(export_state_q(model=model, state=ExportState.EXPORTED))
    sql, params = exported.filter(received_at__gte=since, received_at__lt=until).values("id").query.sql_with_params()
    return f"t.id IN ({sql})", params


def _read(sql: str, params: list) -> list[tuple]:
    """One read under a statement timeout (its own short transaction)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = %s", [REPLAY_STATEMENT_TIMEOUT_MS])
        cursor.execute(sql, params)
        return cursor.fetchall()


def replay_count(*, table: str, since: datetime, until: datetime) -> int:
    """How many rows of `table` received in [since, until) PostgreSQL calls exported."""
    spec = TABLES[table]
    where, params = _where(spec, since, until)
    return _read(f"SELECT count(*) FROM {spec.db_table} t WHERE {where}", list(params))[0][0]  # noqa: S608


def _chunk(spec: TableSpec, since: datetime, until: datetime, after_id: int, limit: int, replay_id: str) -> list:
    columns = ", ".join(c.sql for c in spec.columns)  # `export_batch` is a parameter: the replay id
    where, params = _where(spec, since, until)
    sql = (
        f"SELECT t.id, {spec.insert_key_sql}, {columns} FROM {spec.db_table} t "  # noqa: S608 (identifiers from code)
        f"JOIN {Application._meta.db_table} a ON a.id = t.application_id "
        f"WHERE {where} AND t.id > %s ORDER BY t.id LIMIT %s"
    )
    return _read(sql, [replay_id, *params, after_id, limit])


def export_replay(
    *,
    table: str,
    since: datetime,
    until: datetime,
    dry_run: bool = False,
    on_count: Callable[[ReplayReport], None] | None = None,
    on_progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Count, then (unless `dry_run`) send every EXPORTED row of the range again; raises ReplayError."""
    spec = TABLES[table]
    report = ReplayReport(
        table=table,
        since=since,
        until=until,
        replay_id=f"replay-{uuid.uuid4()}",
        rows=replay_count(table=table, since=since, until=until),
        dry_run=dry_run,
    )
    if on_count:
        on_count(report)
    if dry_run or not report.rows:
        return report
    client = bigquery.client_get()
    try:
        bigquery.dataset_and_tables_ensure(client=client)  # a sink rebuilt from scratch may lack them
    except Exception as exc:  # down or refusing: nothing was sent
        raise ReplayError(f"BigQuery unavailable before anything was sent ({type(exc).__name__}: {exc})") from exc
    limit = settings.EXPORT_BATCH_SIZE
    after_id = 0
    while True:
        records = _chunk(spec, since, until, after_id, limit, report.replay_id)
        if not records:
            return report
        rows = [_row(spec, r) for r in records]
        try:
            errors = client.insert_rows_json(
                bigquery.table_id(spec),
                [r.payload for r in rows],
                row_ids=[r.key for r in rows],
                retry=bigquery.INSERT_RETRY,
                timeout=bigquery.timeout_seconds(),
            )
        except Exception as exc:  # any failure: stop, say what was sent and how to start over
            raise ReplayError(
                f"insert failed after {report.sent} of {report.rows} rows ({type(exc).__name__}: {exc}); "
                f"the last chunk may or may not have landed"
            ) from exc
        if errors:
            raise ReplayError(
                f"BigQuery rejected rows after {report.sent} of {report.rows} rows were sent: {errors[:3]}"
            )
        report.sent += len(rows)
        after_id = rows[-1].pk
        if on_progress:
            on_progress(report)
