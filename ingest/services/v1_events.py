"""Store one `/v1/events` event durably, in one round trip to PostgreSQL.

The row is its own outbox entry (pending export, `webhook_pending`), written by a single
autocommitted INSERT, so it is committed before the 202 and nothing can be half-stored.
Without an `Idempotency-Key` that INSERT is shared: concurrent requests of this process are
group-committed (`ingest.group_commit`: one statement and one commit for all rows queued while
the previous group was being written); each request is answered only after its row's commit.
With an `Idempotency-Key`, claiming the key and inserting the event are one statement: the
event is inserted only when this request claimed the key (new, or older than the TTL). Only a
repeat costs a second query, to answer with the original event id.
When the connection fails during that INSERT, its commit is in doubt: the service reconnects
(bounded, `ingest.db.in_doubt_lookup`) and looks the event id up, answering 202 if the row is
there and 503 only if it is not, so a client's retry never stores an event twice.
Usage is not counted here: `apps_registry.services.usage_refresh` aggregates in batches.
"""

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError

from apps_registry.selectors import AppCredentials
from apps_registry.webhook_events import EVENT_TRIGGERS

from .. import outbox
from ..db import connection_lost, in_doubt_lookup, prepared_cursor, write_outcome_record
from ..group_commit import GroupCommit
from ..models import Event, ExportState, IdempotencyKey
from ..schemas.v1 import V1Event

SESSION_BUCKET_SECONDS = 30 * 60

_EVENT_COLUMNS = (
    "company_id, application_id, received_at, export_state, export_attempts, export_error, "
    "webhook_pending, event_id, event, user_hash, customer_org_id, path, session_id, session_inferred, plan, "
    "environment, occurred_at, properties"
)
# Casts make the types explicit for the INSERT ... SELECT form, where parameters have no column to infer from.
_PENDING = int(ExportState.PENDING)
_EVENT_VALUES = (
    f"%s::bigint, %s::bigint, %s::timestamptz, {_PENDING}, 0, '', %s::boolean, %s::uuid, %s::varchar, "
    "%s::varchar, %s::varchar, %s::varchar, %s::uuid, %s::boolean, %s::varchar, %s::varchar, %s::timestamptz, "
    "%s::jsonb"
)

# Many rows in one statement: the rows arrive as one JSON array of arrays (ingest.group_commit encodes
# them with orjson), so the text is fixed and prepared once per connection whatever the group size.
# One jsonb parameter costs the client far less than an array per column (psycopg dumps those in Python).
_INSERT_GROUP = f"""
INSERT INTO {Event._meta.db_table} ({_EVENT_COLUMNS})
SELECT (r->>0)::bigint, (r->>1)::bigint, (r->>2)::timestamptz, {_PENDING}, 0, '', (r->>3)::boolean,
    (r->>4)::uuid, r->>5, r->>6, r->>7, r->>8, (r->>9)::uuid, (r->>10)::boolean, r->>11, r->>12,
    (r->>13)::timestamptz, (r->>14)::jsonb
FROM jsonb_array_elements(%s::jsonb) AS r
"""  # noqa: S608

_INSERT_IF_KEY_CLAIMED = f"""
WITH claimed AS (
    INSERT INTO {IdempotencyKey._meta.db_table} AS k (application_id, key, event_id, created_at)
    VALUES (%s, %s, %s, %s)
    ON CONFLICT (application_id, key) DO UPDATE
        SET event_id = EXCLUDED.event_id, created_at = EXCLUDED.created_at
        WHERE k.created_at <= %s
    RETURNING 1
)
INSERT INTO {Event._meta.db_table} ({_EVENT_COLUMNS}) SELECT {_EVENT_VALUES} FROM claimed
RETURNING 1
"""  # noqa: S608

_ORIGINAL_EVENT_ID = f"SELECT event_id FROM {IdempotencyKey._meta.db_table} WHERE application_id = %s AND key = %s"  # noqa: S608


_STORED_IDS = f"SELECT event_id FROM {Event._meta.db_table} WHERE event_id = ANY(%s)"  # noqa: S608
_EVENT_ID = 4  # position of event_id in a row of `params` below


def _rows_stored(rows: list[Sequence[Any]]) -> list[bool] | None:
    """After a connection error: which of these rows did commit? None if the database stays away."""
    found = in_doubt_lookup(sql=_STORED_IDS, params=[[row[_EVENT_ID] for row in rows]])
    if found is None:
        return None
    ids = {event_id for (event_id,) in found}
    return [row[_EVENT_ID] in ids for row in rows]


# Concurrent plain events of this process share one INSERT and one commit (see ingest.group_commit).
_group = GroupCommit(statement=_INSERT_GROUP, cursor=prepared_cursor, stored=_rows_stored)


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: uuid.UUID
    replayed: bool  # True when an Idempotency-Key repeat was answered with the original event


def event_id_new() -> uuid.UUID:
    """A UUIDv7: time-ordered, so the unique index on event_id grows at its right edge.

    Random uuid4s land on random index pages, which after each checkpoint costs a full-page
    image in the WAL per insert; time order keeps the hot path's write small.
    """
    # getrandbits, not os.urandom: ids must be unique, not secret, and a syscall per event is measurable.
    # `random` reseeds itself in forked workers; 74 random bits per millisecond make a collision negligible.
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return uuid.UUID(int=value)


def session_infer(*, app_uuid: uuid.UUID, customer_org_id: str, user_hash: str, at: float) -> uuid.UUID:
    """The same user of the same org within one 30-minute bucket shares a session, on any process."""
    bucket = int(at // SESSION_BUCKET_SECONDS)
    return uuid.uuid5(app_uuid, f"{customer_org_id}\x1f{user_hash}\x1f{bucket}")


def v1_event_ingest(
    *,
    credentials: AppCredentials,
    event: V1Event,
    received_at: datetime,
    idempotency_key: str | None = None,
) -> IngestResult:
    """Store `event` for the app `credentials` names and wake the outbox workers after commit."""
    occurred_at = received_at if event.ts_epoch is None else datetime.fromtimestamp(event.ts_epoch, tz=UTC)
    session_id = event.session_id
    if session_id is None:
        session_id = session_infer(
            app_uuid=credentials.app_uuid,
            customer_org_id=event.customer_org_id,
            user_hash=event.user_hash,
            at=occurred_at.timestamp(),
        )
    webhook_pending = event.event in EVENT_TRIGGERS  # v1 events come from the customer's backend: consented
    event_id = event_id_new()
    params = [
        credentials.company_id,
        credentials.app_id,
        received_at,
        webhook_pending,
        event_id,
        event.event,
        event.user_hash,
        event.customer_org_id,
        event.path,
        session_id,
        event.session_id is None,
        event.plan,
        event.environment,
        occurred_at,
        None if event.properties is None else orjson.dumps(event.properties).decode(),
    ]
    if idempotency_key is None:
        _group.write(params)
    else:
        try:
            replayed = _insert_if_key_claimed(
                credentials=credentials, idempotency_key=idempotency_key, received_at=received_at, params=params
            )
        except DatabaseError as exc:
            write_outcome_record(ok=False, exc=exc)
            # In doubt: the claim and the event commit together, so the event's presence says both landed.
            if not connection_lost(exc) or _rows_stored([params]) != [True]:
                raise
        else:
            write_outcome_record(ok=True)
            if replayed is not None:
                return replayed
    outbox.kick(export=True, webhooks=webhook_pending)
    return IngestResult(event_id=event_id, replayed=False)


def _insert_if_key_claimed(
    *, credentials: AppCredentials, idempotency_key: str, received_at: datetime, params: list[Any]
) -> IngestResult | None:
    """Insert the event if this request claims the key; else the original answer. None: inserted."""
    with prepared_cursor() as cursor:
        expired_before = received_at - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
        claim = [credentials.app_id, idempotency_key, params[_EVENT_ID], received_at, expired_before, *params]
        # A second pass only if the key row vanished (purged) between the claim and the read.
        for _ in range(2):
            cursor.execute(_INSERT_IF_KEY_CLAIMED, claim)
            if cursor.fetchone() is not None:
                return None
            cursor.execute(_ORIGINAL_EVENT_ID, [credentials.app_id, idempotency_key])
            row = cursor.fetchone()
            if row is not None:
                return IngestResult(event_id=row[0], replayed=True)
    raise DatabaseError("idempotency key could neither be claimed nor read")
