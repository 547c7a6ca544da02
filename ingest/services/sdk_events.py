"""Storing an SDK batch: one statement, one round trip, idempotent by (application, event_id).

The event table is partitioned by id (ingest/partitions.py), so no unique index of it can say
"this app already sent this event id"; the narrow `SdkEventKey` table does, in the same statement:
each id is first claimed there (its primary key is that constraint, and a concurrent retry waits
for the first to commit, then finds the key), and only the claimed events are stored, each with
the row id its key recorded.

Each valid event becomes an `ingest.SdkEvent` row that is also its own outbox entry: the same
INSERT sets `export_state` (pending, or skipped when the user gave no analytics consent) and
`webhook_pending` (the name triggers a webhook and consent was given). A single statement in
autocommit is its own transaction, so the events and the work they owe commit together and
before the client hears 200.

The rows travel as one JSON parameter expanded by `json_to_recordset`: PostgreSQL types them,
and Python adapts a single string instead of a dozen arrays. The statement is bound server-side
and prepared once per connection (`ingest.db.prepared_cursor`), so PostgreSQL parses and plans it
once, not per batch.

A connection error during the statement leaves its commit in doubt: the service reconnects and
looks the batch's ids up (`ingest.db.in_doubt_lookup`), answering 200 if the batch landed and
503 only if it did not. A retry would be harmless (idempotent by event id), but the answer must
still be true.
"""

from dataclasses import dataclass
from datetime import datetime

import msgspec
from django.db import DatabaseError

from apps_registry.webhook_events import EVENT_TRIGGERS

from .. import outbox
from ..db import connection_lost, in_doubt_lookup, prepared_cursor, write_outcome_record
from ..models import ExportState, SdkEvent, SdkEventKey

_encode = msgspec.json.Encoder().encode
_TRIGGER_NAMES = sorted(EVENT_TRIGGERS)
if not all(name.isidentifier() for name in _TRIGGER_NAMES):  # they are inlined as SQL literals below
    raise ValueError("webhook trigger names must be identifiers")
# Constants are part of the statement text, so each request only adapts the values that vary.
_TRIGGERS_SQL = "ARRAY[" + ", ".join(f"'{name}'" for name in _TRIGGER_NAMES) + "]::text[]"
_PENDING, _SKIPPED = int(ExportState.PENDING), int(ExportState.SKIPPED)
_SEQUENCE = f"{SdkEvent._meta.db_table}_id_seq"  # the id column's identity sequence

_INSERT = f"""
WITH t AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS t(
        event_id uuid, event_name text, ts_ms bigint, anon_id uuid, user_id text, platform text, os text,
        app_version text, sdk_version text, locale text, bundle_version float8, country text,
        session_id uuid, properties jsonb, consent boolean
    )
),
fresh AS (
    INSERT INTO {SdkEventKey._meta.db_table} (application_id, event_id, received_at, row_id)
    SELECT %(app_id)s, t.event_id, %(received_at)s, nextval('{_SEQUENCE}') FROM t
    ON CONFLICT DO NOTHING
    RETURNING event_id, row_id
),
stored AS (
    INSERT INTO {SdkEvent._meta.db_table} (
        id, company_id, application_id, received_at, export_state, export_attempts, export_error,
        webhook_pending, event_id, schema_version, event_name, ts_ms, occurred_at, anon_id,
        user_id, platform, os, app_version, sdk_version, locale, bundle_version, country,
        session_id, properties, consent_analytics
    )
    SELECT
        f.row_id, %(company_id)s, %(app_id)s, %(received_at)s,
        CASE WHEN t.consent THEN {_PENDING} ELSE {_SKIPPED} END, 0, '',
        t.consent AND t.event_name = ANY({_TRIGGERS_SQL}), t.event_id, 1, t.event_name, t.ts_ms,
        timestamptz 'epoch' + t.ts_ms * interval '1 millisecond', t.anon_id,
        t.user_id, t.platform, t.os, t.app_version, t.sdk_version, t.locale, t.bundle_version, t.country,
        t.session_id, t.properties, t.consent
    FROM t JOIN fresh f ON f.event_id = t.event_id
    RETURNING export_state, webhook_pending
)
SELECT count(*), coalesce(bool_or(export_state = {_PENDING}), false), coalesce(bool_or(webhook_pending), false)
FROM stored
"""  # noqa: S608 - only the table name and constants of this module are interpolated; values are parameters


_LANDED = f"""
SELECT count(*), count(*) FILTER (WHERE received_at = %(received_at)s)
FROM {SdkEventKey._meta.db_table}
WHERE application_id = %(app_id)s AND event_id = ANY(%(event_ids)s::uuid[])
"""  # noqa: S608 - only the model's table name is interpolated


@dataclass(frozen=True, slots=True)
class StoredBatch:
    stored: int  # newly written rows; the rest were already stored (SDK retries) or repeated in the batch
    export_owed: bool
    webhooks_owed: bool


def sdk_events_ingest(*, app_id: int, company_id: int, rows: list[dict], received_at: datetime) -> StoredBatch:
    """Store validated rows (from `ingest.schemas.sdk`) once each and wake the outbox workers.

    An id repeated inside the batch keeps its first occurrence: the SDK generated both, so they
    are the same event, and only one row may exist.
    """
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["event_id"] not in seen:
            seen.add(row["event_id"])
            unique.append(row)
    if not unique:
        return StoredBatch(stored=0, export_owed=False, webhooks_owed=False)
    params = {
        "company_id": company_id,
        "app_id": app_id,
        "received_at": received_at,
        "rows": _encode(unique).decode(),
    }
    try:
        with prepared_cursor() as cursor:
            cursor.execute(_INSERT, params)
            stored, export_owed, webhooks_owed = cursor.fetchone()
    except DatabaseError as exc:
        write_outcome_record(ok=False, exc=exc)
        if not connection_lost(exc):
            raise
        landed = _batch_landed(app_id=app_id, event_ids=[row["event_id"] for row in unique], received_at=received_at)
        if landed is None:
            raise
        stored, export_owed, webhooks_owed = landed, True, True  # flags unknown: a spare kick costs nothing
    else:
        write_outcome_record(ok=True)
    if stored:
        outbox.kick(export=export_owed, webhooks=webhooks_owed)
    return StoredBatch(stored=stored, export_owed=export_owed, webhooks_owed=webhooks_owed)


def _batch_landed(*, app_id: int, event_ids: list[str], received_at: datetime) -> int | None:
    """After a connection error: rows this batch stored if its statement committed, None if it did not.

    The statement is atomic, so it committed exactly when every id of the batch is stored now;
    the rows it wrote itself carry its `received_at` (the others were stored by earlier sends).
    """
    found = in_doubt_lookup(sql=_LANDED, params={"app_id": app_id, "event_ids": event_ids, "received_at": received_at})
    if found is None or found[0][0] != len(event_ids):
        return None
    return int(found[0][1])
