"""Can this process store events right now? The checks behind /api/v1/ingest/health and /readyz.

`SELECT 1` answers on a read-only database or a full disk too, while every event gets a 503. So
the database check commits a one-row write (`ingest.WriteProbe`, under short lock and statement
timeouts), and also fails while this process's real inserts have been failing for a reason that
is not the event's own (`ingest.db.writes_failing`: a disk that is full only where the event
tables grow). Health endpoints are public and polled often, so each verdict is computed at most
once per `HEALTH_CACHE_SECONDS` per process, by one thread while the others wait for it.
"""

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from saastracker.redis_client import get_redis

from .db import writes_failing
from .models import WriteProbe

logger = logging.getLogger(__name__)

RECENT_WRITE_FAILURE_SECONDS = 10.0  # a failed real insert this recent (and none OK since) fails the check

_PROBE = f"""
INSERT INTO {WriteProbe._meta.db_table} (id, checked_at) VALUES (1, now())
ON CONFLICT (id) DO UPDATE SET checked_at = EXCLUDED.checked_at
"""  # noqa: S608 - only the model's own table name is interpolated

_lock = threading.Lock()
_verdicts: dict[str, tuple[bool, float]] = {}
_migrations_applied = False  # once true, true for the life of the process (migrations are not undone)


def _cached(name: str, check: Callable[[], bool]) -> bool:
    with _lock:
        hit = _verdicts.get(name)
        if hit is not None and time.monotonic() - hit[1] < settings.HEALTH_CACHE_SECONDS:
            return hit[0]
        ok = check()
        _verdicts[name] = (ok, time.monotonic())
        return ok


def verdicts_forget() -> None:
    """For tests: compute every verdict afresh."""
    global _migrations_applied
    with _lock:
        _verdicts.clear()
        _migrations_applied = False


def database_writable() -> bool:
    """True when PostgreSQL is reachable and commits a write, and real inserts are not failing."""
    return _cached("database", _database_write_check)


def _database_write_check() -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '2s'")
            cursor.execute(_PROBE)
    except DatabaseError:
        logger.warning("health check: the database does not accept writes", exc_info=True)
        # A broken persistent connection must not keep failing the next checks: reconnect next time.
        connection.close_if_unusable_or_obsolete()
        return False
    if writes_failing(within=RECENT_WRITE_FAILURE_SECONDS):
        logger.warning("health check: the probe write committed but this process's event inserts are failing")
        return False
    return True


def redis_reachable() -> bool:
    """Rate limits, credentials invalidation and worker kicks go through Redis (ingest fails open without it)."""
    return _cached("redis", _redis_ping)


def _redis_ping() -> bool:
    try:
        return bool(get_redis().ping())
    except Exception:  # any client or socket error means unreachable
        logger.warning("readiness check: Redis unreachable", exc_info=True)
        return False


def migrations_applied() -> bool:
    """True when every migration of the code is applied to the database (a deploy ran `migrate`)."""
    global _migrations_applied
    if not _migrations_applied:
        _migrations_applied = _cached("migrations", _migrations_check)
    return _migrations_applied


def _migrations_check() -> bool:
    try:
        executor = MigrationExecutor(connection)
        return not executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        logger.warning("readiness check: could not read the applied migrations", exc_info=True)
        connection.close_if_unusable_or_obsolete()
        return False


def readiness() -> dict[str, bool]:
    """Every check /readyz reports, by name."""
    return {"database": database_writable(), "redis": redis_reachable(), "migrations": migrations_applied()}
