"""The Event stream: an application's stored events, newest first, read straight from PostgreSQL.

An event is in the stream as soon as its 2xx has been sent (the row is committed before the
answer). Order is (received_at, id) descending, and `next` is a keyset cursor on that pair: a
page is one index range scan (`event_app_received` / `sdkevent_app_received`) that starts where
the previous page ended, so its cost does not grow with the table or with how far back it is,
and events that arrive meanwhile (newer than every page already read) never shift a later page:
no gaps, no repeats. SDK events without analytics consent are kept for audit only and never shown
(the SDK index is partial on consent, so they are not even scanned).

The raw tables are in weekly partitions (ingest/partitions.py). A page first reads only the week
that holds its rows (with the week before near a cut), bounded by id so that PostgreSQL plans it
over that partition alone; the older weeks are read only when that page comes out short or
reaches back to before the week began, and both reads are merged. So a page's cost does not grow
with the number of weeks kept either.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from django.db import connection
from django.utils import timezone

from apps_registry.models import Application
from ingest import partitions
from ingest.errors import ApiError
from ingest.models import Event, SdkEvent

from .reads import timed_read

Source = Literal["events", "sdk_events"]
MAX_LIMIT = 200
DEFAULT_LIMIT = 50

_EVENT_COLUMNS = [
    "event_id",
    "event",
    "user_hash",
    "customer_org_id",
    "path",
    "session_id",
    "session_inferred",
    "plan",
    "environment",
    "occurred_at",
    "received_at",
    "properties",
]
_SDK_COLUMNS = [
    "event_id",
    "event_name",
    "schema_version",
    "ts_ms",
    "occurred_at",
    "received_at",
    "anon_id",
    "user_id",
    "platform",
    "os",
    "app_version",
    "sdk_version",
    "locale",
    "bundle_version",
    "country",
    "session_id",
    "properties",
]
# Filters per source: query parameter -> SQL condition over the table (one %s per occurrence).
_FILTERS: dict[str, dict[str, str]] = {
    "events": {
        "event": "event = %s",
        "customer_org_id": "customer_org_id = %s",
        "environment": "environment = %s",
        "user": "user_hash = %s",
    },
    "sdk_events": {
        "event": "event_name = %s",
        "user": "(user_id = %s OR anon_id::text = %s)",
    },
}


def cursor_encode(received_at: datetime, row_id: int) -> str:
    raw = f"{received_at.astimezone(UTC).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    """The (received_at, id) a cursor points below; ApiError 400 naming `before` when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        received_at = datetime.fromisoformat(stamp)
        if received_at.tzinfo is None:
            raise ValueError("naive")
        position = int(row_id)
        if not 0 < position < 2**63:
            raise ValueError("out of range")
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError) as exc:
        raise ApiError(
            status_code=400,
            code="validation_failed",
            message="The stream request failed validation.",
            details=[{"field": "before", "message": "Not a cursor this API issued (use `next` as given)."}],
        ) from exc
    return received_at, position


# Times as ISO 8601 UTC, as Python's isoformat writes them (no fraction on a whole second), with `Z`.
_ISO = (
    "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
    "|| CASE WHEN date_trunc('second', {c}) = {c} THEN '' ELSE to_char({c} AT TIME ZONE 'UTC', '.US') END || 'Z'"
)
_TIMES = {"occurred_at", "received_at"}
_MICROS = "(extract(epoch FROM received_at) * 1000000)::bigint"  # exact: extract returns numeric
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _event_json_sql(columns: list[str]) -> str:
    """Each row as its JSON text, built by PostgreSQL: no per-field decoding and re-encoding in Python."""
    members = ", ".join(f"'{c}', {_ISO.format(c=c) if c in _TIMES else c}" for c in columns)
    return f"json_build_object({members})::text"


def stream_sql(
    *,
    app: Application,
    source: Source,
    limit: int,
    before: str | None,
    filters: dict[str, str] | None = None,
    ids: tuple[int | None, int | None] = (None, None),
) -> tuple[str, list[Any]]:
    """A page's statement: an index range scan on (application, received_at, id), newest first.

    Rows are `(id, received_at in microseconds since the epoch, event JSON text)`; the first two
    make the cursor (an integer: a page's 200 timestamps are not each decoded into a datetime when
    only the last is used). `ids` bounds the row ids to [from, below) (literals, so that the planner
    prunes the partitions).
    """
    table = Event._meta.db_table if source == "events" else SdkEvent._meta.db_table
    columns = _EVENT_COLUMNS if source == "events" else _SDK_COLUMNS
    where = ["application_id = %s"]
    params: list[Any] = [app.pk]
    if source == "sdk_events":
        where.append("consent_analytics")
    if before is not None:
        received_at, row_id = cursor_decode(before)
        where.append("(received_at, id) < (%s, %s)")
        params += [received_at, row_id]
    for name, value in (filters or {}).items():
        condition = _FILTERS[source][name]
        where.append(condition)
        params += [value] * condition.count("%s")
    id_from, id_below = ids
    if id_from is not None:
        where.append(f"id >= {int(id_from)}")
    if id_below is not None:
        where.append(f"id < {int(id_below)}")
    sql = (
        f"SELECT id, {_MICROS}, {_event_json_sql(columns)} FROM {table} "  # noqa: S608 (fixed names; values are parameters)
        f"WHERE {' AND '.join(where)} ORDER BY received_at DESC, id DESC LIMIT %s"
    )
    params.append(limit + 1)
    return sql, params


def stream_filters_allowed(source: Source) -> list[str]:
    return list(_FILTERS[source])


@timed_read
def _page_rows(
    *,
    app: Application,
    source: Source,
    limit: int,
    before: str | None,
    event: str | None,
    customer_org_id: str | None,
    environment: str | None,
    user: str | None,
) -> tuple[list[str], str | None]:
    """The page's events as JSON texts, and the cursor of the next page; one query (two near a weekly cut)."""
    given = {"event": event, "customer_org_id": customer_org_id, "environment": environment, "user": user}
    filters = {name: value for name, value in given.items() if value is not None}
    bad = [name for name, value in given.items() if value is not None and "\x00" in value]
    if bad:  # PostgreSQL holds no NUL: a 400 naming the member, not a DataError answered 503
        raise ApiError(
            status_code=400,
            code="validation_failed",
            message="The stream request failed validation.",
            details=[{"field": name, "message": "Must not contain NUL characters."} for name in bad],
        )
    wrong = [name for name in filters if name not in _FILTERS[source]]
    if wrong:
        raise ApiError(
            status_code=400,
            code="validation_failed",
            message="The stream request failed validation.",
            details=[{"field": name, "message": f"Not a filter of {source}."} for name in wrong],
        )
    limit = max(1, min(limit, MAX_LIMIT))
    rows = _rows(app=app, source=source, limit=limit, before=before, filters=filters)
    page = rows[:limit]
    next_cursor = (
        cursor_encode(_EPOCH + timedelta(microseconds=page[-1][1]), page[-1][0]) if len(rows) > limit else None
    )
    return [row[2] for row in page], next_cursor


def recent_floor(source: Source, before: str | None) -> partitions.Floor | None:
    """The id bound of the page's first read: the week(s) holding its newest rows (see module docstring)."""
    table = Event._meta.db_table if source == "events" else SdkEvent._meta.db_table
    near, row_id = cursor_decode(before) if before is not None else (timezone.now(), None)
    return partitions.recent_floor(table, near=near, row_id=row_id)


def _rows(*, app: Application, source: Source, limit: int, before: str | None, filters: dict[str, str]) -> list:
    """Up to `limit + 1` rows of the page: from the recent week(s) alone when they hold the whole page."""
    floor = recent_floor(source, before)

    def fetch(ids: tuple[int | None, int | None]) -> list:
        sql, params = stream_sql(app=app, source=source, limit=limit, before=before, filters=filters, ids=ids)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    if floor is None:
        return fetch((None, None))
    rows = fetch((floor.below, None))
    if len(rows) > limit and rows[limit - 1][1] > (floor.received_by - _EPOCH) // _MICROSECOND:
        return rows  # every older row was received before this page's last one: it comes after
    rows += fetch((None, floor.below))
    rows.sort(key=lambda row: (row[1], row[0]), reverse=True)
    return rows[: limit + 1]


def stream_page_get(**kwargs: Any) -> dict[str, Any]:
    """One page of the stream: `{"events": [...], "next": cursor | None}` (see `_page_rows`)."""
    events, next_cursor = _page_rows(**kwargs)
    return {"events": [orjson.loads(text) for text in events], "next": next_cursor}


def stream_page_json(**kwargs: Any) -> bytes:
    """The same page as the JSON the API answers, assembled from PostgreSQL's JSON without decoding it."""
    events, next_cursor = _page_rows(**kwargs)
    return b'{"events":[' + ",".join(events).encode() + b'],"next":' + orjson.dumps(next_cursor) + b"}"
