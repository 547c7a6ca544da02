"""Exactly-once export of stored rows to BigQuery, with bookkeeping that never rewrites a stored row.

A stored row is written once, by ingest, as PENDING (or SKIPPED: no analytics consent). What the
export knows about it lives in three narrow ledger tables (ingest/models.py), so an exported event
costs no UPDATE of its wide row, no dead tuple and no new index entries:

- `ExportCursor`, one row per table: every owed row with `id <= claimed_upto` has been claimed.
  Rows above it are PENDING. Rows at or below it are EXPORTED unless a batch holds them (SENDING),
  an `ExportRetry` holds them (PENDING again) or they are DEAD (the one state written on the row:
  rare, and the admin filters, shows and retries it there).
- `ExportBatch`: the ids of one insert call's rows not settled yet, with a lease.
- `ExportRetry`: ids below the cursor owed again (a call that failed, a dead letter retried).

One chunk goes through three steps:

1. CLAIM, a short transaction: the ids of an `ExportRetry` row (`FOR UPDATE SKIP LOCKED`), or else
   the next owed rows above the cursor, locked `FOR UPDATE` (claims of one table take turns), up to
   the table's horizon (below). The ids go into a new `ExportBatch` whose lease outlives the task's
   hard time limit, the cursor moves past them. COMMIT.
2. SEND: one `insertAll` call, insert id = the row's key, every row carrying its batch id.
3. SETTLE, a second short transaction: ids that landed leave the batch, rows BigQuery rejected
   are written DEAD, rows to send again go to `ExportRetry`; an empty batch is deleted.

The horizon (ingest/horizon.py): the claim passes an id only once no transaction that could still
commit a row below it is running. Ingest pays nothing for this: no trigger, no extra row, no extra
index (the partial indexes of pending and sending rows are gone, the cursor walks the primary key).

The database lock is not held across the HTTP call: a lock would not survive a worker that dies
mid-call anyway, and the emulator (like BigQuery past its best-effort window) does not deduplicate
insert ids, so "resend whatever was not marked" could duplicate. Instead, a batch whose lease ran
out (its worker died between 1 and 3) is RECOVERED by the sweeper: it asks BigQuery which rows of
that batch landed (`WHERE export_batch = @batch`), settles those as exported and puts the rest in
`ExportRetry`. The lease is longer than the task's hard limit, so the worker is gone by then and a
row is never sent twice.

Failures while sending:
- Could not connect (refused, DNS, connect timeout): nothing was sent. Rows are owed again at
  once and the task retries with backoff. Ingest is unaffected.
- BigQuery answered with an error (4xx/5xx): the work on its side is finished, so we ask it which
  rows landed, mark those, and then: a 400/500 (what the emulator answers for a badly typed row) is
  bisected, halves resent, down to the single bad row, which goes to DEAD with the reason; other
  statuses (429, 503...) make the rest owed again, retried with backoff.
- BigQuery answered 404 (dataset or table missing, e.g. after an in-memory restart of the sink):
  a definite answer, so nothing was inserted and there is nothing to ask. The rows are owed again,
  the drain creates what is missing (as `bigquery_setup` does) and carries on.
- Per-row `insertErrors` (real BigQuery): reason `invalid` -> DEAD; rows only `stopped` because of
  an invalid neighbour are resent at once; other reasons -> owed again.
- A timeout or a dropped connection: the call may still be running, so nothing is concluded now;
  the rows stay in their batch and lease-expiry recovery settles them. The drain stops claiming (a
  hung sink would otherwise take a chunk per timeout into SENDING) and the task backs off.

When recovery (or the exporter) asks BigQuery which rows landed and the table does not exist, none
did: that is checked with a second call, never assumed from an error alone.

Rows without analytics consent (SKIPPED) and DEAD rows are never claimed. With no BigQuery
configured, nothing runs and rows stay PENDING.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Case, Min, Model, Q, QuerySet, Subquery, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from google.api_core import exceptions as gexc
from google.cloud import bigquery as bq

from apps_registry.models import Application
from ingest import bigquery, horizon
from ingest.bigquery import TABLES, TableSpec
from ingest.models import Event, ExportBatch, ExportCursor, ExportRetry, ExportState, IdentifyLink, SdkEvent

logger = logging.getLogger(__name__)

# Time limits of the export tasks (tasks.py uses these): the lease must outlive the hard limit.
EXPORT_SOFT_TIME_LIMIT = 100
EXPORT_HARD_TIME_LIMIT = 120
LEASE_MARGIN_SECONDS = 60
DRAIN_BUDGET_SECONDS = 60.0
# Past the insert call's timeout by this much, a batch's outcome can be asked of BigQuery.
IN_DOUBT_MARGIN_SECONDS = 5.0
MAX_ERROR_LENGTH = 2000
# An empty claim with ids drawn above the cursor by writers still running looks again this often.
HORIZON_WAITS = 5
HORIZON_WAIT_SECONDS = 0.02

MODELS: dict[str, type[Event | SdkEvent | IdentifyLink]] = {
    "events": Event,
    "sdk_events": SdkEvent,
    "identify_links": IdentifyLink,
}


def lease_seconds() -> int:
    return EXPORT_HARD_TIME_LIMIT + LEASE_MARGIN_SECONDS


@dataclass
class ExportReport:
    claimed: int = 0
    exported: int = 0
    dead: int = 0
    requeued: int = 0
    unresolved: int = 0  # left SENDING for lease-expiry recovery
    unavailable: bool = False  # BigQuery unreachable: back off
    transient: bool = False  # BigQuery answered with a retryable error: back off
    unknown: bool = False  # a call's outcome is unknown (timeout): stop claiming, back off
    tables_missing: bool = False  # BigQuery answered 404: create the dataset and tables, then retry
    more: bool = False  # the budget ran out with rows still pending: continue in a new task

    def add(self, other: ExportReport) -> None:
        self.claimed += other.claimed
        self.exported += other.exported
        self.dead += other.dead
        self.requeued += other.requeued
        self.unresolved += other.unresolved
        self.unavailable = self.unavailable or other.unavailable
        self.transient = self.transient or other.transient
        self.unknown = self.unknown or other.unknown
        self.tables_missing = self.tables_missing or other.tables_missing
        self.more = self.more or other.more

    @property
    def back_off(self) -> bool:
        """BigQuery is down, pushing back or not answering: retry later rather than now."""
        return self.unavailable or self.transient or self.unknown

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Row:
    pk: int
    key: str
    payload: dict


@dataclass
class _Chunk:
    spec: TableSpec
    batch_id: uuid.UUID
    rows: list[_Row]
    exported: set[int] = field(default_factory=set)
    dead: dict[int, str] = field(default_factory=dict)
    requeue: set[int] = field(default_factory=set)
    transient: bool = False
    tables_missing: bool = False


class _Unavailable(Exception):
    """The request never reached BigQuery."""


class _Unknown(Exception):
    """The outcome of a call cannot be known now."""


# --- claim -------------------------------------------------------------------------------------


def _rows_sql(spec: TableSpec, where: str) -> str:
    """The rows to send, ready for the wire; the first parameter is the batch id (a column)."""
    columns = ", ".join(c.sql for c in spec.columns)
    return f"""
        SELECT t.id, {spec.insert_key_sql}, {columns}
        FROM {spec.db_table} t JOIN {Application._meta.db_table} a ON a.id = t.application_id
        WHERE {where} ORDER BY t.id
    """  # noqa: S608 (identifiers come from code, values are parameters)


def _row(spec: TableSpec, record: tuple) -> _Row:
    payload = dict(zip((c.name for c in spec.columns), record[2:], strict=True))
    for name in spec.float_columns:
        value = payload.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            payload[name] = str(value).replace("inf", "Infinity").replace("nan", "NaN")
    return _Row(pk=record[0], key=record[1], payload=payload)


def _claim_retry(cursor: CursorWrapper, spec: TableSpec) -> tuple[list[int], int] | None:
    """Take one `ExportRetry` row of the table, if any is free: (its owed ids, attempts so far)."""
    cursor.execute(
        f"DELETE FROM {ExportRetry._meta.db_table} WHERE id = ("  # noqa: S608 (identifiers from code)
        f'SELECT id FROM {ExportRetry._meta.db_table} WHERE "table" = %s ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED'
        ") RETURNING ids, attempts",
        [spec.name],
    )
    taken = cursor.fetchone()
    if taken is None:
        return None
    ids, attempts = taken
    cursor.execute(
        f"SELECT id FROM {spec.db_table} WHERE id = ANY(%s) "  # noqa: S608 (identifiers from code)
        f"AND export_state NOT IN ({ExportState.DEAD}, {ExportState.SKIPPED}) ORDER BY id",
        [ids],
    )
    return [r[0] for r in cursor.fetchall()], attempts


def _claim_above(cursor: CursorWrapper, spec: TableSpec, limit: int) -> tuple[list[int], bool]:
    """Take the next owed ids above the table's cursor, up to its horizon, and move the cursor past them.

    Also says whether ids were drawn above the cursor that it may not pass yet (their writers run).
    The horizon is looked at only when fewer than a chunk of ids is known to be safe.
    """
    state = ExportCursor.objects.select_for_update().filter(table=spec.name).first()
    if state is None:
        ExportCursor.objects.get_or_create(table=spec.name)
        state = ExportCursor.objects.select_for_update().get(table=spec.name)
    if state.safe_upto - state.claimed_upto < limit:
        horizon.advance(cursor, spec.db_table, state)
    ids: list[int] = []
    if state.safe_upto > state.claimed_upto:
        condition = f" AND {spec.claim_filter}" if spec.claim_filter else ""
        cursor.execute(
            f"SELECT t.id FROM {spec.db_table} t WHERE t.id > %s AND t.id <= %s "  # noqa: S608 (identifiers from code)
            f"AND t.export_state = {ExportState.PENDING}{condition} ORDER BY t.id LIMIT %s",
            [state.claimed_upto, state.safe_upto, limit],
        )
        ids = [r[0] for r in cursor.fetchall()]
        state.claimed_upto = ids[-1] if len(ids) >= limit else state.safe_upto
    state.save()
    return ids, state.horizon_id > state.claimed_upto


def _claim_once(spec: TableSpec, limit: int, batch_id: uuid.UUID) -> tuple[_Chunk | None, bool]:
    """A chunk (or None), and whether rows may be waiting for their writers to finish (see `_claim_above`).

    Only ids are taken under the claim's locks; the rows are read for the wire after its commit
    (stored rows never change, and a batch's rows are not deleted while it holds them).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        retry = _claim_retry(cursor, spec)
        behind = False
        if retry is not None and retry[0]:
            ids, attempts = retry
        else:  # no retry row, or only rows that died or went meanwhile
            (ids, behind), attempts = _claim_above(cursor, spec, limit), 0
        if not ids:
            return None, behind
        now = timezone.now()
        ExportBatch.objects.create(
            id=batch_id,
            table=spec.name,
            ids=ids,
            attempts=min(attempts + 1, 32767),
            row_count=len(ids),
            claimed_at=now,
            lease_until=now + timedelta(seconds=lease_seconds()),
        )
    with connection.cursor() as cursor:
        cursor.execute(_rows_sql(spec, "t.id = ANY(%s)"), [str(batch_id), ids])
        records = cursor.fetchall()
    return _Chunk(spec=spec, batch_id=batch_id, rows=[_row(spec, r) for r in records]), False


def _claim_undo(spec: TableSpec, batch_id: uuid.UUID) -> None:
    """Give back a claim whose commit may have happened: nothing of it was sent, so no lease is needed."""
    with transaction.atomic():
        batch = ExportBatch.objects.select_for_update().filter(id=batch_id).first()
        if batch is not None:
            _owed_again(spec, batch.ids, attempts=batch.attempts)
            batch.delete()


def _claim(spec: TableSpec, limit: int, *, deadline: float) -> _Chunk | None:
    """Claim a chunk; across a database outage, wait for it (until `deadline`) and claim again.

    Rows whose writers were still running at the last claim are waited for briefly (inserts take
    milliseconds), so the last rows of a burst do not wait for the next kick or sweep.
    """
    waits = 0
    while True:
        batch_id = uuid.uuid4()
        try:
            chunk, behind = _claim_once(spec, limit, batch_id)
            if chunk is not None or not behind or waits >= HORIZON_WAITS:
                return chunk
            waits += 1
            time.sleep(HORIZON_WAIT_SECONDS)
        except DATABASE_DOWN_ERRORS as exc:
            # The connection broke: the commit may still have happened. Undo it once the database
            # answers (nothing was sent for it), instead of leaving it to wait out its lease.
            _database_retry(functools.partial(_claim_undo, spec, batch_id), first_error=exc, deadline=deadline)


# --- the database going away -------------------------------------------------------------------

# What a stopped, crashed or restarting PostgreSQL raises (psycopg's OperationalError and
# InterfaceError, wrapped by Django); a constraint or programming error is not retried.
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError)
# How long an exporter waits for the database to come back before leaving its batch to recovery.
DATABASE_WAIT_SECONDS = 60.0


def _database_retry(action: Callable[[], None], *, first_error: Exception, deadline: float) -> None:
    """Run `action` as soon as the database answers again; re-raise once `deadline` has passed.

    The exporter is the only one who knows what BigQuery did with its batch, so it waits for the
    database (a blip of seconds) instead of dying and leaving the batch to its 180 s lease. Inside
    someone else's transaction (tests) a broken connection cannot be replaced: re-raise at once.
    """
    error: Exception = first_error
    delay = 0.1
    while True:
        if connection.in_atomic_block or time.monotonic() >= deadline:
            raise error
        logger.warning("export: database unavailable (%s); retrying in %.1f s", str(error).strip()[:200], delay)
        with contextlib.suppress(DatabaseError, InterfaceError):
            connection.close()  # a broken connection is dropped; the next query opens a new one
        time.sleep(delay)
        delay = min(1.0, delay * 2)
        try:
            action()
            return
        except DATABASE_DOWN_ERRORS as exc:
            error = exc


# --- send --------------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


def _table_missing(client: bq.Client, spec: TableSpec) -> bool:
    """True only when BigQuery says the table (or its dataset) does not exist; False if unsure."""
    try:
        client.get_table(bigquery.table_id(spec), retry=bigquery.QUERY_RETRY, timeout=bigquery.timeout_seconds())
    except gexc.NotFound:
        return True
    except Exception:  # cannot tell: the caller keeps treating the outcome as unknown
        return False
    return False


def _landed_keys(client: bq.Client, spec: TableSpec, batch_id: uuid.UUID) -> set[str]:
    """The insert keys of `batch_id` that are in BigQuery; raises _Unknown if it cannot tell.

    A table that does not exist holds none of them (the sink lost it, or it was never created).
    """
    table = bigquery.table_id(spec)  # identifiers from code; the batch id is a query parameter
    sql = f"SELECT {spec.insert_key_bq} AS k FROM `{table}` WHERE export_batch = @batch"  # noqa: S608
    config = bq.QueryJobConfig(query_parameters=[bq.ScalarQueryParameter("batch", "STRING", str(batch_id))])
    try:
        job = client.query(sql, job_config=config, retry=bigquery.QUERY_RETRY, timeout=bigquery.timeout_seconds())
        return {row["k"] for row in job.result(retry=bigquery.QUERY_RETRY, timeout=bigquery.timeout_seconds())}
    except Exception as exc:  # any failure means we cannot tell (unless the table is gone): leave it to recovery
        if isinstance(exc, gexc.NotFound) and _table_missing(client, spec):
            return set()
        raise _Unknown(_error_text(exc)) from exc


def _deliver(client: bq.Client, chunk: _Chunk, rows: list[_Row]) -> None:
    """Send `rows` and record each one's fate in `chunk`; bisects on whole-call row errors."""
    if not rows:
        return
    try:
        errors = client.insert_rows_json(
            bigquery.table_id(chunk.spec),
            [r.payload for r in rows],
            row_ids=[r.key for r in rows],
            retry=bigquery.INSERT_RETRY,
            timeout=bigquery.timeout_seconds(),
        )
    except Exception as exc:  # classified below; anything unclassified is "outcome unknown"
        if bigquery.is_connect_failure(exc):
            raise _Unavailable(_error_text(exc)) from exc
        if not (isinstance(exc, gexc.GoogleAPICallError) and exc.code):
            raise _Unknown(_error_text(exc)) from exc
        if exc.code == 404:  # dataset or table missing: a definite answer, nothing was inserted
            logger.warning("bigquery %s not found (%s); %d rows back to pending", chunk.spec.name, exc, len(rows))
            chunk.requeue.update(r.pk for r in rows)
            chunk.transient = chunk.tables_missing = True
            return
        # BigQuery answered: whatever it did is done, so ask which rows landed.
        landed = _landed_keys(client, chunk.spec, chunk.batch_id)
        rest = []
        for r in rows:
            if r.key in landed:
                chunk.exported.add(r.pk)
            else:
                rest.append(r)
        if not rest:
            return
        if exc.code in (400, 413, 500):  # a bad row (or too big a request): find it by halves
            if len(rest) == 1:
                chunk.dead[rest[0].pk] = _error_text(exc)
                return
            middle = len(rest) // 2
            _deliver(client, chunk, rest[:middle])
            _deliver(client, chunk, rest[middle:])
            return
        logger.warning("bigquery %s answered %s; %d rows back to pending", chunk.spec.name, exc.code, len(rest))
        chunk.requeue.update(r.pk for r in rest)
        chunk.transient = True
        return
    failed: dict[int, list[dict]] = {e["index"]: e.get("errors", []) for e in errors}
    stopped = []
    for index, r in enumerate(rows):
        row_errors = failed.get(index)
        if row_errors is None:
            chunk.exported.add(r.pk)
            continue
        reasons = {e.get("reason") for e in row_errors}
        if "invalid" in reasons:
            chunk.dead[r.pk] = "; ".join(
                f"{e.get('reason')}: {e.get('location', '')} {e.get('message', '')}".strip() for e in row_errors
            )[:MAX_ERROR_LENGTH]
        elif reasons == {"stopped"}:
            stopped.append(r)
        else:
            chunk.requeue.add(r.pk)
            chunk.transient = True
    if stopped and len(stopped) < len(rows):
        _deliver(client, chunk, stopped)
    elif stopped:  # every row "stopped" and none invalid: nothing to learn, retry later
        chunk.requeue.update(r.pk for r in stopped)
        chunk.transient = True


# --- settle ------------------------------------------------------------------------------------


def _owed_again(spec: TableSpec, ids: list[int] | set[int], *, attempts: int) -> None:
    """Rows below the cursor that BigQuery is owed again, in retry rows of at most a chunk each."""
    ordered = sorted(ids)
    size = settings.EXPORT_BATCH_SIZE
    ExportRetry.objects.bulk_create(
        ExportRetry(table=spec.name, ids=ordered[i : i + size], attempts=attempts) for i in range(0, len(ordered), size)
    )


def _settle(
    spec: TableSpec, batch_id: uuid.UUID, *, exported: set[int], dead: dict[int, str], requeue: set[int]
) -> None:
    """Record the fate of a batch's rows; delete the batch once none of its rows is left in doubt.

    Idempotent: only ids still in the batch are settled, so a commit whose reply was lost is
    harmless to repeat, and two settlers (the exporter, recovery) never settle a row twice.
    """
    with transaction.atomic():
        batch = ExportBatch.objects.select_for_update().filter(id=batch_id).first()
        if batch is None:
            return
        held = set(batch.ids)
        dead = {pk: reason for pk, reason in dead.items() if pk in held}
        requeue = (requeue & held) - set(dead)
        if dead:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {spec.db_table} SET export_state = {ExportState.DEAD}, export_error = %s, "  # noqa: S608
                    "export_attempts = %s WHERE id = %s",
                    [(reason, batch.attempts, pk) for pk, reason in dead.items()],
                )
        if requeue:
            _owed_again(spec, requeue, attempts=batch.attempts)
        batch.ids = [pk for pk in batch.ids if pk not in exported and pk not in dead and pk not in requeue]
        if batch.ids:
            batch.save(update_fields=["ids"])
        else:
            batch.delete()
    for pk, reason in dead.items():
        logger.error("bigquery %s row %s rejected permanently, dead-lettered: %s", spec.name, pk, reason)


def _settle_surely(chunk: _Chunk, *, deadline: float) -> None:
    """Settle `chunk`; across a database outage, keep its outcome and settle when the database is back."""

    def settle() -> None:
        _settle(chunk.spec, chunk.batch_id, exported=chunk.exported, dead=chunk.dead, requeue=chunk.requeue)

    try:
        settle()
    except DATABASE_DOWN_ERRORS as exc:
        _database_retry(settle, first_error=exc, deadline=deadline)
        logger.warning(
            "export: %s batch %s settled once the database answered again (%d exported)",
            chunk.spec.name,
            chunk.batch_id,
            len(chunk.exported),
        )


def _export_chunk(client: bq.Client, spec: TableSpec, limit: int, *, db_deadline: float = 0.0) -> ExportReport:
    report = ExportReport()
    chunk = _claim(spec, limit, deadline=db_deadline)
    if chunk is None:
        return report
    report.claimed = len(chunk.rows)
    try:
        _deliver(client, chunk, chunk.rows)
    except _Unavailable as exc:
        # Nothing of this call was sent; what is not settled yet never landed.
        logger.warning("bigquery unreachable (%s); %s rows owed again", exc, spec.name)
        settled = chunk.exported | chunk.requeue | set(chunk.dead)
        chunk.requeue.update(r.pk for r in chunk.rows if r.pk not in settled)
        report.unavailable = True
    except _Unknown as exc:
        logger.warning("bigquery %s batch %s outcome unknown (%s); left to recovery", spec.name, chunk.batch_id, exc)
        report.unknown = True
    _settle_surely(chunk, deadline=db_deadline)
    report.exported = len(chunk.exported)
    report.dead = len(chunk.dead)
    report.requeued = len(chunk.requeue)
    report.unresolved = report.claimed - report.exported - report.dead - report.requeued
    report.transient = chunk.transient
    report.tables_missing = chunk.tables_missing
    return report


# --- public ------------------------------------------------------------------------------------


def export_drain(
    *,
    budget_seconds: float = DRAIN_BUDGET_SECONDS,
    tables: list[str] | None = None,
    on_backlog: Callable[[], None] | None = None,
) -> ExportReport:
    """Export pending rows of every table, chunk by chunk, until none is left or the budget is used.

    Tables take turns, one chunk each per round, and a table found empty is looked at again every
    round (one cheap claim query): rows that arrive in a small table while a big one drains a
    backlog wait one round, not until the backlog is gone (issue 17, item 1c). The drain ends after
    a round in which no table filled a chunk.

    Stops early (report.back_off) when BigQuery is down, pushing back or not answering, so the
    caller can retry with backoff. When BigQuery answers that a table is missing, creates the
    dataset and tables once and carries on. `on_backlog` is called once, when a full chunk suggests
    more work than one worker should do alone. A database outage is waited out (up to
    DATABASE_WAIT_SECONDS): the batch in hand is settled as soon as the database answers.
    """
    report = ExportReport()
    if not bigquery.is_enabled():
        return report
    client = bigquery.client_get()
    limit = settings.EXPORT_BATCH_SIZE
    started = time.monotonic()
    deadline = started + budget_seconds
    # Waiting for the database stops short of the task's soft time limit (the lease outlives it).
    db_stop = started + max(budget_seconds, EXPORT_SOFT_TIME_LIMIT - 10)
    specs = [TABLES[name] for name in (tables or TABLES)]
    created_tables = False
    more = True
    while more and time.monotonic() < deadline:
        more = False  # another round only if some table filled a chunk (or must be retried)
        for spec in specs:
            if time.monotonic() >= deadline:
                more = True
                break
            db_deadline = min(time.monotonic() + DATABASE_WAIT_SECONDS, db_stop)
            chunk_report = _export_chunk(client, spec, limit, db_deadline=db_deadline)
            if chunk_report.tables_missing and not created_tables:
                created_tables = True
                if _tables_create(client):
                    chunk_report.transient = False  # fixed: the rows are pending again, go on at once
            report.add(chunk_report)
            if chunk_report.back_off:
                return report
            if chunk_report.tables_missing or chunk_report.claimed >= limit:
                more = True
            if chunk_report.claimed >= limit and on_backlog is not None:
                on_backlog()
                on_backlog = None
    report.more = more
    return report


def _tables_create(client: bq.Client) -> bool:
    """Create the dataset and tables BigQuery said were missing; False if that failed too."""
    try:
        created = bigquery.dataset_and_tables_ensure(client=client)
    except Exception as exc:  # still down or refusing: the task backs off and tries again
        logger.warning("bigquery tables missing and could not be created (%s); will retry", _error_text(exc))
        return False
    logger.warning("bigquery answered not found; created %s", ", ".join(created) or "nothing (they exist now)")
    return True


def in_doubt_seconds() -> float:
    """A batch claimed longer ago than this has had its insert call answered or timed out.

    Its worker may be gone, waiting for the database, or backing off after a timeout; either way
    BigQuery can already say which of its rows landed.
    """
    return bigquery.timeout_seconds() + IN_DOUBT_MARGIN_SECONDS


def export_batches_in_doubt_count(*, now: datetime | None = None) -> int:
    """Batches old enough for recovery to resolve what landed (expired ones included)."""
    now = now or timezone.now()
    return ExportBatch.objects.filter(claimed_at__lt=now - timedelta(seconds=in_doubt_seconds())).count()


def _landed_keys_many(client: bq.Client, spec: TableSpec, batch_ids: list[uuid.UUID]) -> dict[str, set[str]]:
    """For each of `batch_ids`, its insert keys that are in BigQuery (one query); raises _Unknown."""
    table = bigquery.table_id(spec)  # identifiers from code; the batch ids are a query parameter
    sql = (
        f"SELECT export_batch AS b, {spec.insert_key_bq} AS k FROM `{table}` "  # noqa: S608
        "WHERE export_batch IN UNNEST(@batches)"
    )
    config = bq.QueryJobConfig(
        query_parameters=[bq.ArrayQueryParameter("batches", "STRING", [str(b) for b in batch_ids])]
    )
    landed: dict[str, set[str]] = {str(b): set() for b in batch_ids}
    try:
        job = client.query(sql, job_config=config, retry=bigquery.QUERY_RETRY, timeout=bigquery.timeout_seconds())
        for row in job.result(retry=bigquery.QUERY_RETRY, timeout=bigquery.timeout_seconds()):
            landed.setdefault(row["b"], set()).add(row["k"])
    except Exception as exc:  # as _landed_keys: unknown unless the table is certainly gone
        if isinstance(exc, gexc.NotFound) and _table_missing(client, spec):
            return landed
        raise _Unknown(_error_text(exc)) from exc
    return landed


def _resolve_in_doubt(client: bq.Client, *, now: datetime, limit: int) -> ExportReport:
    """Mark the rows that landed of batches still under lease, as soon as BigQuery can tell.

    A timed-out insert, or a worker gone (or waiting for the database) after BigQuery answered,
    leaves rows in their batch. Those in BigQuery are settled as exported now; that is always safe,
    whoever owns the batch (a settle only takes ids still in the batch). Rows not found are left
    alone until the lease runs out: the call may still land them.
    """
    report = ExportReport()
    batches = list(
        ExportBatch.objects.filter(
            claimed_at__lt=now - timedelta(seconds=in_doubt_seconds()), lease_until__gte=now
        ).values_list("id", "table", "ids")[:limit]
    )
    by_table: dict[str, list[tuple[uuid.UUID, list[int]]]] = {}
    for batch_id, table, ids in batches:
        by_table.setdefault(table, []).append((batch_id, ids))
    for table, held in by_table.items():
        spec = TABLES[table]
        landed = _landed_keys_many(client, spec, [batch_id for batch_id, _ in held])  # _Unknown: the caller stops
        keys = _insert_keys(spec, [pk for _, ids in held for pk in ids])
        for batch_id, ids in held:
            exported = {pk for pk in ids if keys.get(pk) in landed.get(str(batch_id), set())}
            if not exported:
                continue
            _settle(spec, batch_id, exported=exported, dead={}, requeue=set())
            logger.info(
                "export recovery: %s batch %s: %d landed before its lease ran out%s",
                spec.name,
                batch_id,
                len(exported),
                "" if len(exported) == len(ids) else f", {len(ids) - len(exported)} still in doubt",
            )
            report.claimed += len(exported)
            report.exported += len(exported)
    return report


def _insert_keys(spec: TableSpec, ids: list[int]) -> dict[int, str]:
    """The insert key of each stored row among `ids` (the value BigQuery holds)."""
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.id, {spec.insert_key_sql} FROM {spec.db_table} t "  # noqa: S608 (identifiers from code)
            f"JOIN {Application._meta.db_table} a ON a.id = t.application_id WHERE t.id = ANY(%s)",
            [ids],
        )
        return dict(cursor.fetchall())


def exports_recover(*, now: datetime | None = None, limit: int = 200) -> ExportReport:
    """Settle batches whose lease ran out (their worker died), then resolve batches in doubt.

    Expired: ask BigQuery what landed, settle it as exported, owe the rest again. The batch row is
    locked (SKIP LOCKED) for the duration, so two sweepers never settle the same batch; if
    BigQuery cannot answer, nothing changes and the next sweep tries again.
    In doubt (older than `in_doubt_seconds()`, still under lease): mark what landed (see
    `_resolve_in_doubt`), so a batch that landed is not held for its whole lease.
    """
    report = ExportReport()
    if not bigquery.is_enabled():
        return report
    client = bigquery.client_get()
    now = now or timezone.now()
    expired = list(
        ExportBatch.objects.filter(lease_until__lt=now).order_by("lease_until").values_list("id", flat=True)[:limit]
    )
    for batch_id in expired:
        try:
            with transaction.atomic():
                batch = ExportBatch.objects.select_for_update(skip_locked=True).filter(id=batch_id).first()
                if batch is None:
                    continue
                spec = TABLES[batch.table]
                keys = _insert_keys(spec, batch.ids)
                landed = _landed_keys(client, spec, batch_id) if batch.ids else set()
                exported = {pk for pk in batch.ids if keys.get(pk) in landed}
                requeue = set(batch.ids) - exported
                _settle(spec, batch_id, exported=exported, dead={}, requeue=requeue)
        except _Unknown as exc:
            logger.warning("export recovery: bigquery cannot tell what landed (%s); will retry", exc)
            report.unavailable = True
            return report
        logger.info(
            "export recovery: %s batch %s: %d landed, %d back to pending",
            spec.name,
            batch_id,
            len(exported),
            len(requeue),
        )
        report.claimed += len(exported) + len(requeue)
        report.exported += len(exported)
        report.requeued += len(requeue)
    try:
        report.add(_resolve_in_doubt(client, now=now, limit=limit))
    except _Unknown as exc:
        logger.warning("export recovery: bigquery cannot tell what landed of batches in doubt (%s); will retry", exc)
        report.unavailable = True
    return report


@dataclass
class ExportStatus:
    enabled: bool  # False with no BIGQUERY_PROJECT: nothing is exported, so there is no lag
    oldest_unexported_at: datetime | None
    lag_seconds: float
    pending_count: int
    sending_count: int
    dead_count: int
    batches_in_flight: int
    batches_expired: int


# --- a row's export state, read from the ledger -------------------------------------------------


def spec_of(model: type[Model]) -> TableSpec:
    """The export table of an outbox model."""
    return next(spec for spec in TABLES.values() if spec.db_table == model._meta.db_table)


def export_state_q(*, model: type[Model], state: ExportState) -> Q:
    """A filter for the rows of `model` in `state`; only the ledger's few rows are read besides.

    Stored PENDING rows above the cursor are pending; rows in a batch are being sent; rows in a
    retry are pending again; DEAD and SKIPPED are stored on the row; every other owed row is
    exported (rows stored EXPORTED or SENDING before the ledger included: migration 0009).
    """
    spec = spec_of(model)
    upto = Coalesce(Subquery(ExportCursor.objects.filter(table=spec.name).values("claimed_upto")[:1]), Value(0))
    batch = Q(id__in=_ids_sql(ExportBatch, spec))
    retry = Q(id__in=_ids_sql(ExportRetry, spec))
    owed = ~Q(export_state__in=(ExportState.DEAD, ExportState.SKIPPED))
    consent = Q(consent_analytics=True) if spec.claim_filter else Q()
    above = Q(export_state=ExportState.PENDING, id__gt=upto) & consent
    skipped = Q(export_state=ExportState.SKIPPED)
    return {
        ExportState.DEAD: Q(export_state=ExportState.DEAD),
        ExportState.SKIPPED: skipped | ~consent if spec.claim_filter else skipped,
        ExportState.SENDING: owed & batch,
        ExportState.PENDING: owed & (above | retry),
        ExportState.EXPORTED: owed & consent & ~above & ~batch & ~retry,
    }[state]


def _ids_sql(model: type[ExportBatch | ExportRetry], spec: TableSpec) -> RawSQL:
    """The ids held by a ledger table for `spec`'s table (a few chunks: batches in flight, retries)."""
    return RawSQL(f'SELECT unnest(ids) FROM {model._meta.db_table} WHERE "table" = %s', [spec.name])  # noqa: S608, S611


def export_state_annotate(queryset: QuerySet) -> QuerySet:
    """`queryset` with each row's export state as `export_status` (for a page of rows, not a whole table)."""
    model = queryset.model
    whens = [
        When(export_state_q(model=model, state=state), then=Value(int(state)))
        for state in (ExportState.DEAD, ExportState.SKIPPED, ExportState.SENDING, ExportState.PENDING)
    ]
    return queryset.annotate(export_status=Case(*whens, default=Value(int(ExportState.EXPORTED))))


def export_oldest_unexported_get(*, queryset: QuerySet) -> datetime | None:
    """When the oldest row still owed to BigQuery (pending, owed again or being sent) was received.

    Pending rows: the first stored PENDING row above the cursor, along the primary key (ids grow
    with time). Rows in batches and retries are few (a few chunks per worker) and found by id.
    """
    spec = spec_of(queryset.model)
    upto = _claimed_upto(spec)
    pending = (
        queryset.filter(id__gt=upto, export_state=ExportState.PENDING)
        .exclude(export_state_q(model=queryset.model, state=ExportState.SKIPPED))
        .order_by("id")
        .values_list("received_at", flat=True)
        .first()
    )
    held = _held_ids(spec)
    in_ledger = queryset.filter(id__in=held).aggregate(oldest=Min("received_at"))["oldest"] if held else None
    candidates = [t for t in (pending, in_ledger) if t is not None]
    return min(candidates) if candidates else None


def export_owed_in(*, model: type[Model], rows: Q) -> bool:
    """Whether any row of `model` that `rows` selects still owes BigQuery something (pending, sent, dead).

    Each part is an index probe (ids above the cursor, the ledger's few ids, the dead rows' partial
    index), so a whole partition is checked without reading it.
    """
    spec = spec_of(model)
    selected = model._default_manager.filter(rows)
    return (
        selected.filter(id__gt=_claimed_upto(spec), export_state=ExportState.PENDING).exists()
        or selected.filter(id__in=_held_ids(spec)).exists()
        or selected.filter(export_state=ExportState.DEAD).exists()
    )


def _claimed_upto(spec: TableSpec) -> int:
    return ExportCursor.objects.filter(table=spec.name).values_list("claimed_upto", flat=True).first() or 0


def _held_ids(spec: TableSpec) -> list[int]:
    """Ids in the table's batches and retries: rows below the cursor still owed."""
    return [
        pk
        for model in (ExportBatch, ExportRetry)
        for ids in model.objects.filter(table=spec.name).values_list("ids", flat=True)
        for pk in ids
    ]


@dataclass(frozen=True)
class TableBacklog:
    """What one export table still owes BigQuery."""

    pending: int
    sending: int
    dead: int
    oldest_unexported_at: datetime | None


def _ids_count(model: type[ExportBatch | ExportRetry], spec: TableSpec) -> int:
    return sum(len(ids) for ids in model.objects.filter(table=spec.name).values_list("ids", flat=True))


def export_backlog_get(*, model: type[Event | SdkEvent | IdentifyLink], count_limit: int = 1_000_000) -> TableBacklog:
    """One table's backlog from the ledger and the primary key; the pending count stops at `count_limit`."""
    spec = spec_of(model)
    rows = model.objects.all()
    above = rows.filter(id__gt=_claimed_upto(spec), export_state=ExportState.PENDING)
    if spec.claim_filter:
        above = above.exclude(export_state_q(model=model, state=ExportState.SKIPPED))
    return TableBacklog(
        pending=above[:count_limit].count() + _ids_count(ExportRetry, spec),
        sending=_ids_count(ExportBatch, spec),
        dead=rows.filter(export_state=ExportState.DEAD).count(),
        oldest_unexported_at=export_oldest_unexported_get(queryset=rows),
    )


def export_status_get(*, now: datetime | None = None, count_limit: int = 1_000_000) -> ExportStatus:
    """Export lag (age of the oldest row not yet exported), backlog and dead letters.

    Read straight from the ledger and the outbox tables by whoever asks (the admin, the maintenance
    sweep, the `export_status` command), never by the export workers, so it stays right while they
    are stuck. Counts stop at `count_limit` per table to stay cheap on a huge backlog.
    """
    now = now or timezone.now()
    backlogs = [export_backlog_get(model=model, count_limit=count_limit) for model in MODELS.values()]
    oldest = min((b.oldest_unexported_at for b in backlogs if b.oldest_unexported_at), default=None)
    return ExportStatus(
        enabled=bigquery.is_enabled(),
        oldest_unexported_at=oldest,
        lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        pending_count=sum(b.pending for b in backlogs),
        sending_count=sum(b.sending for b in backlogs),
        dead_count=sum(b.dead for b in backlogs),
        batches_in_flight=ExportBatch.objects.count(),
        batches_expired=ExportBatch.objects.filter(lease_until__lt=now).count(),
    )


def export_retry_dead(*, model: type[Event | SdkEvent | IdentifyLink], ids: list[int]) -> int:
    """Put dead-lettered rows back to pending (admin action). Returns how many.

    A row below the cursor is owed again through `ExportRetry`; one above it (dead before the
    ledger) is pending again by its stored state alone. The cursor is locked so it cannot pass a
    row between the two.
    """
    spec = spec_of(model)
    with transaction.atomic():
        ExportCursor.objects.get_or_create(table=spec.name)
        upto = ExportCursor.objects.select_for_update().get(table=spec.name).claimed_upto
        dead = list(model.objects.filter(id__in=ids, export_state=ExportState.DEAD).values_list("id", flat=True))
        model.objects.filter(id__in=dead).update(export_state=ExportState.PENDING, export_error="")
        _owed_again(spec, [pk for pk in dead if pk <= upto], attempts=0)
    return len(dead)


def sdk_unconsented_skip() -> int:
    """Belt and braces: a pending SDK row without consent is marked SKIPPED, never exported."""
    return SdkEvent.objects.filter(export_state=ExportState.PENDING, consent_analytics=False).update(
        export_state=ExportState.SKIPPED
    )
