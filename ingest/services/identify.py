"""Linking an anonymous device to a known user (POST /api/v1/ingest/identify).

Every distinct (app, anon_id, user_id) is one row, so the history of links is kept; a repeat
only moves `last_seen_at`. The `user.identified` webhook is owed once per link: the new row is
written with `webhook_pending`, a repeat leaves the flag alone. A connection error during the
upsert is resolved by looking the link up again (`ingest.db.in_doubt_lookup`): 200 if it is
there, 503 only if it is not.
"""

import uuid
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection

from .. import outbox
from ..db import connection_lost, in_doubt_lookup, write_outcome_record
from ..models import ExportState, IdentifyKey, IdentifyLink

_LINKS = IdentifyLink._meta.db_table
_KEYS = IdentifyKey._meta.db_table
# The link table is partitioned by id (ingest/partitions.py): "this link exists" is the key table's
# primary key. The key is claimed (or found, and locked, by DO UPDATE: a concurrent repeat waits for
# the first to commit) and names the link row's id; the row is inserted or its last_seen_at moved.
_UPSERT = f"""
WITH k AS (
    INSERT INTO {_KEYS} AS k (application_id, anon_id, user_id, row_id)
    VALUES (%(app_id)s, %(anon_id)s, %(user_id)s, nextval('{_LINKS}_id_seq'))
    ON CONFLICT (application_id, anon_id, user_id) DO UPDATE SET row_id = k.row_id
    RETURNING row_id, (xmax = 0) AS created
),
added AS (
    INSERT INTO {_LINKS} (
        id, company_id, application_id, received_at, export_state, export_attempts, export_error,
        webhook_pending, link_id, anon_id, user_id, last_seen_at
    )
    SELECT k.row_id, %(company_id)s, %(app_id)s, %(at)s, %(pending)s, 0, '', true, %(link_id)s, %(anon_id)s,
        %(user_id)s, %(at)s
    FROM k WHERE k.created
    RETURNING link_id
),
seen AS (
    UPDATE {_LINKS} l SET last_seen_at = GREATEST(l.last_seen_at, %(at)s)
    FROM k WHERE NOT k.created AND l.id = k.row_id
    RETURNING l.link_id
)
SELECT coalesce((SELECT link_id FROM added), (SELECT link_id FROM seen)), k.created, k.row_id FROM k
"""  # noqa: S608 - only the models' own table names are interpolated; every value is a parameter
# A key whose link row retention has just deleted (the key goes in the same run, see
# ingest/services/retention.py): forgotten, so the repeat stores the link again.
_FORGET = f"DELETE FROM {_KEYS} WHERE application_id = %s AND anon_id = %s AND user_id = %s AND row_id = %s"  # noqa: S608
_LANDED = f"""
SELECT l.link_id FROM {_KEYS} k JOIN {_LINKS} l ON l.id = k.row_id
WHERE k.application_id = %(app_id)s AND k.anon_id = %(anon_id)s AND k.user_id = %(user_id)s
  AND l.last_seen_at >= %(at)s
"""  # noqa: S608 - only the models' own table names are interpolated
# `xmax = 0` is PostgreSQL's tell for "this row was inserted, not updated, by this statement".


def identify_link_record(
    *, app_id: int, company_id: int, anon_id: str, user_id: str, seen_at: datetime
) -> tuple[uuid.UUID, bool]:
    """(link_id, created): one round trip; wakes the webhook fan-out only for a new link."""
    params: dict[str, Any] = {
        "company_id": company_id,
        "app_id": app_id,
        "at": seen_at,
        "pending": ExportState.PENDING,
        "link_id": uuid.uuid4(),
        "anon_id": anon_id,
        "user_id": user_id,
    }
    try:
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT, params)
            link_id, created, row_id = cursor.fetchone()
            if link_id is None:
                cursor.execute(_FORGET, [app_id, anon_id, user_id, row_id])
                cursor.execute(_UPSERT, params)
                link_id, created, row_id = cursor.fetchone()
    except DatabaseError as exc:
        write_outcome_record(ok=False, exc=exc)
        if not connection_lost(exc):
            raise
        landed = _upsert_landed(app_id=app_id, anon_id=anon_id, user_id=user_id, seen_at=seen_at)
        if landed is None:
            raise
        link_id, created = landed[0], landed[0] == params["link_id"]
    else:
        write_outcome_record(ok=True)
    if created:
        outbox.kick(export=True, webhooks=True)
    return link_id, created


def _upsert_landed(*, app_id: int, anon_id: str, user_id: str, seen_at: datetime) -> tuple[uuid.UUID] | None:
    """After a connection error: (link_id,) if the link is stored and seen at least at `seen_at`, else None.

    Then what the upsert would have done is in the database, whether it or an earlier call did it.
    """
    found = in_doubt_lookup(
        sql=_LANDED, params={"app_id": app_id, "anon_id": anon_id, "user_id": user_id, "at": seen_at}
    )
    return (found[0][0],) if found else None
