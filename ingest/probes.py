"""Can this process store events right now? The checks behind /api/v1/ingest/health and /readyz.

`SELECT 1` answers on a read-only database or a full disk too, while every event gets a 503. So
the database check commits a one-row write (`ingest.WriteProbe`, under short lock and statement
timeouts), and also fails while this process's real inserts have been failing for a reason that
is not the event's own (`ingest.db.writes_failing`: a disk that is full only where the event
tables grow). Health endpoints are public and polled often, so each verdict is computed at most
once per `HEALTH_CACHE_SECONDS` per process, on a probe thread of its own.

A probe answers within `HEALTH_PROBE_TIMEOUT_SECONDS` whatever the database does (issue 17, item
3): a server that is frozen or still starting keeps the probe thread waiting, not the caller, who
gets "failing" at the deadline (unless this process stored events within the last second or two
and none failed since: a busy machine's slow probe is not an outage). The cached verdict is also
dropped as soon as this process's real writes disagree with it: a failed insert after a good
verdict, or a good one after a bad verdict, so the probes never say 200 while events get 503
(and recover as soon as events do).

Redis is reported but does not decide readiness (issue 17, item 2): ingest takes events without it
(the rate limiter fails open), so a Redis outage is "degraded", never a reason to leave rotation.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from saastracker.redis_client import get_redis

from .db import write_outcome_times, writes_failing
from .models import WriteProbe

logger = logging.getLogger(__name__)

RECENT_WRITE_FAILURE_SECONDS = 10.0  # a failed real insert this recent (and none OK since) fails the check

_PROBE = f"""
INSERT INTO {WriteProbe._meta.db_table} (id, checked_at) VALUES (1, now())
ON CONFLICT (id) DO UPDATE SET checked_at = EXCLUDED.checked_at
"""  # noqa: S608 - only the model's own table name is interpolated

# Checks that decide readiness, and checks only reported (ingest works without them).
REQUIRED = ("database", "migrations")
OPTIONAL = ("redis",)

_lock = threading.Lock()
_verdicts: dict[str, tuple[bool, float]] = {}
_running: dict[str, Future] = {}
# One thread per check at most: a check stuck on a frozen server holds its own thread only.
# Made on first use in each process (threads do not survive a fork).
_pool: tuple[int, ThreadPoolExecutor] | None = None
_migrations_applied = False  # once true, true for the life of the process (migrations are not undone)


def _fresh(name: str, hit: tuple[bool, float]) -> bool:
    ok, computed_at = hit
    if time.monotonic() - computed_at >= settings.HEALTH_CACHE_SECONDS:
        return False
    if name == "database":
        # Real writes are the truth: a verdict they contradict since it was computed is dropped at once.
        ok_at, failed_at = write_outcome_times()
        if ok and failed_at > computed_at:
            return False
        if not ok and ok_at > computed_at and ok_at > failed_at:
            return False
    return True


def _probe_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=3, thread_name_prefix="probe"))
        _running.clear()  # futures of the parent's threads would never finish here
    return _pool[1]


def _run(name: str, check: Callable[[], bool]) -> bool:
    """On a probe thread: compute, remember, and give the thread's connection back if it must go."""
    try:
        ok = check()
    except Exception:  # a bug or an unexpected error in a check means "not ok", never a 500
        logger.exception("health check %s raised", name)
        ok = False
    finally:
        connection.close_if_unusable_or_obsolete()
    with _lock:
        _verdicts[name] = (ok, time.monotonic())
    return ok


def _verdicts_get(checks: dict[str, Callable[[], bool]]) -> dict[str, bool]:
    """Every named verdict, cached or computed side by side, within one deadline (False past it)."""
    results: dict[str, bool] = {}
    waiting: dict[str, Future] = {}
    with _lock:
        for name, check in checks.items():
            hit = _verdicts.get(name)
            if hit is not None and _fresh(name, hit):
                results[name] = hit[0]
                continue
            future = _running.get(name)
            if future is None or future.done():
                future = _running[name] = _probe_pool().submit(_run, name, check)
            waiting[name] = future
    if waiting:
        futures_wait(waiting.values(), timeout=settings.HEALTH_PROBE_TIMEOUT_SECONDS)
        for name, future in waiting.items():
            try:
                results[name] = future.result(timeout=0)
            except FutureTimeout:
                # A slow database that real inserts show is taking writes (a busy machine) is not down.
                results[name] = name == "database" and _writes_recently_ok()
                logger.warning(
                    "health check %s did not answer within %ss (%s)",
                    name,
                    settings.HEALTH_PROBE_TIMEOUT_SECONDS,
                    "events are being stored: ok" if results[name] else "failing",
                )
    return results


def _writes_recently_ok() -> bool:
    """This process stored events in the last HEALTH_CACHE_SECONDS (at least 1 s) and none failed since."""
    ok_at, failed_at = write_outcome_times()
    return ok_at > failed_at and time.monotonic() - ok_at < max(1.0, settings.HEALTH_CACHE_SECONDS)


def verdicts_forget() -> None:
    """For tests: compute every verdict afresh."""
    global _migrations_applied
    with _lock:
        _verdicts.clear()
        _running.clear()
        _migrations_applied = False


def database_writable() -> bool:
    """True when PostgreSQL is reachable and commits a write, and real inserts are not failing."""
    return _verdicts_get({"database": _database_write_check})["database"]


def _database_write_check() -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '500ms'; SET LOCAL statement_timeout = '800ms'")
            cursor.execute(_PROBE)
    except DatabaseError:
        logger.warning("health check: the database does not accept writes", exc_info=True)
        return False
    if writes_failing(within=RECENT_WRITE_FAILURE_SECONDS):
        logger.warning("health check: the probe write committed but this process's event inserts are failing")
        return False
    return True


def redis_reachable() -> bool:
    """Rate limits, credentials invalidation and worker kicks go through Redis (ingest fails open without it)."""
    return _verdicts_get({"redis": _redis_ping})["redis"]


def _redis_ping() -> bool:
    try:
        return bool(get_redis().ping())
    except Exception:  # any client or socket error means unreachable
        logger.warning("readiness check: Redis unreachable", exc_info=True)
        return False


def _migrations_check() -> bool:
    global _migrations_applied
    if _migrations_applied:
        return True
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '800ms'")
            executor = MigrationExecutor(connection)
            applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        logger.warning("readiness check: could not read the applied migrations", exc_info=True)
        return False
    _migrations_applied = applied
    return applied


def readiness() -> dict[str, bool]:
    """Every check /readyz reports, by name (see REQUIRED and OPTIONAL)."""
    return _verdicts_get({"database": _database_write_check, "redis": _redis_ping, "migrations": _migrations_check})
