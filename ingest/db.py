"""Prepared statements for the ingest hot path, on Django's own connection.

Django binds parameters client-side and keeps psycopg's statement preparation off (connection
poolers in transaction mode break prepared statements). The ingest services opt in for their
few fixed statements only: bound server-side and prepared once per connection, so PostgreSQL
parses and plans them once. Behind PgBouncer in transaction mode (`DATABASE_POOLER=pgbouncer`;
Debian's 1.18 has no `max_prepared_statements`) they are bound server-side but never prepared.
"""

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DataError, IntegrityError, InterfaceError, OperationalError, connections
from django.db.backends.postgresql.base import DatabaseWrapper, ServerBindingCursor

logger = logging.getLogger(__name__)

_PREPARE_ONLY_WHEN_ASKED = 2**31  # Django's own cursors bind client-side and never prepare anyway


# django-stubs declare ServerBindingCursor without its psycopg.Cursor base, and make_cursor() as taking
# Django's CursorWrapper where it takes (and wraps) a DB-API cursor: hence the ignores below.
class _PreparedCursor(ServerBindingCursor):
    """Server-side binding, every statement prepared on first use per connection."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        return super().execute(query, params, prepare=True, binary=binary)  # type: ignore[misc]  # see above


def prepared_cursor() -> Any:
    """A prepared-statement cursor wrapped like any Django cursor: errors mapped, queries counted."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each `django.db.connection.x` is a thread-local lookup
    db.ensure_connection()
    db.validate_thread_sharing()
    pg = db.connection
    if settings.DATABASE_POOLER:  # transaction pooling: a statement prepared on one server connection
        with db.wrap_database_errors:  # is unknown on the next; bind server-side, unnamed, every time
            raw = ServerBindingCursor(pg)  # type: ignore[call-arg]  # see above
        return db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)  # type: ignore[arg-type]
    if pg.prepare_threshold is None:  # Django's default disables preparing; allow it only when asked
        pg.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
    with db.wrap_database_errors:
        raw = _PreparedCursor(pg)  # type: ignore[call-arg]  # psycopg.Cursor(connection), see above
    return db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)  # type: ignore[arg-type]  # see above


# --- In-doubt commits ---------------------------------------------------------------------------
#
# A connection error during an autocommitted INSERT leaves its outcome unknown: PostgreSQL may have
# committed the row and died (or lost the socket) before the answer reached us. Answering 503 then
# is untruthful, and a client that retries without an Idempotency-Key stores the event twice. The
# services know the ids they tried to write, so they reconnect and look them up before answering.

_CONNECTION_ERRORS = (OperationalError, InterfaceError)


def connection_lost(exc: BaseException) -> bool:
    """True when `exc` means the connection failed, so a statement sent on it may or may not have committed.

    An error the server sent for the statement (a full disk, a read-only database: it has a
    SQLSTATE outside classes 08 and 57P) means it did not commit, so there is nothing to look up.
    """
    if not isinstance(exc, _CONNECTION_ERRORS):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def in_doubt_lookup(
    *, sql: str, params: Sequence[Any] | dict[str, Any], using: str = DEFAULT_DB_ALIAS, within: float | None = None
) -> list[tuple[Any, ...]] | None:
    """Run the read `sql` on a fresh connection after a lost one; None if the database stays unreachable.

    The broken connection is closed first (the thread's next statement reconnects). If its server
    process still runs our statement (the socket broke but the backend lives on), we wait for it
    to finish, so it cannot commit after we looked. Bounded by `within` seconds in all
    (`settings.DB_IN_DOUBT_SECONDS` by default: long enough for a crash recovery).
    """
    if within is None:
        within = settings.DB_IN_DOUBT_SECONDS
    db = cast(DatabaseWrapper, connections[using])  # PostgreSQL's: its `Database` is psycopg
    if db.in_atomic_block:  # the caller's transaction is lost with its connection: nothing of it committed
        return None
    old_pid, failed_at = _backend_pid(db), datetime.now(UTC)
    with contextlib.suppress(Exception):  # it is broken: closing it may fail too, and that is fine
        db.close()
    deadline = time.monotonic() + within
    params_connect = db.get_connection_params()
    while True:
        remaining = deadline - time.monotonic()
        params_connect["connect_timeout"] = max(2, math.ceil(remaining))  # libpq's minimum is 2 s
        try:
            with db.Database.connect(**params_connect) as pg:
                pg.autocommit = True
                with pg.cursor() as cursor:
                    if old_pid and not _backend_wait_idle(cursor, old_pid, failed_at, deadline):
                        logger.warning("in-doubt commit: the statement still runs after %.1f s", within)
                        return None  # it may still commit: we cannot say it did not
                    cursor.execute(sql, params)
                    return cursor.fetchall()
        except db.Database.Error:
            logger.debug("in-doubt lookup: database not reachable yet", exc_info=True)
            if time.monotonic() + 0.1 >= deadline:
                logger.warning("in-doubt commit could not be resolved within %.1f s", within)
                return None
            time.sleep(0.1)


def _backend_pid(db: Any) -> int:
    pg = db.connection
    try:
        return int(pg.pgconn.backend_pid) if pg is not None else 0
    except Exception:  # a closed or never-opened connection has no backend
        return 0


def _backend_wait_idle(cursor: Any, pid: int, failed_at: datetime, deadline: float) -> bool:
    """Wait while our old backend still runs a statement (it could commit after our look-up).

    False if it still does at `deadline`. Only a backend that started before the failure can be
    ours (after a restart another connection may have the same pid): waited for, never terminated.
    """
    busy = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND backend_start < %s"
    while True:
        cursor.execute(busy, [pid, failed_at])
        if cursor.fetchone() is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


# --- Recent outcome of real writes --------------------------------------------------------------
#
# The health probe writes a row of its own, but some failures only show on the event tables (a
# full disk when a table must grow, a lock, a broken index). Each process therefore remembers when
# its last real write succeeded and when one last failed for a reason that is not the event's own.

_outcome = {"ok_at": 0.0, "failed_at": 0.0}


def write_outcome_record(*, ok: bool, exc: BaseException | None = None) -> None:
    """Record a real write's outcome; a bad row (constraint, bad value) says nothing about the database."""
    if ok:
        _outcome["ok_at"] = time.monotonic()
    elif not isinstance(exc, IntegrityError | DataError):
        _outcome["failed_at"] = time.monotonic()


def writes_failing(*, within: float) -> bool:
    """True when this process's last real write failed within `within` seconds and none succeeded since."""
    failed_at = _outcome["failed_at"]
    return failed_at > _outcome["ok_at"] and time.monotonic() - failed_at < within


def write_outcome_times() -> tuple[float, float]:
    """(last success, last failure) of this process's real writes, in `time.monotonic()` seconds (0: none)."""
    return _outcome["ok_at"], _outcome["failed_at"]


def write_outcome_forget() -> None:
    """For tests: start with no recorded outcome."""
    _outcome.update(ok_at=0.0, failed_at=0.0)
