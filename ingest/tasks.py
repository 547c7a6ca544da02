"""Celery tasks for the export and retention: thin, idempotent (hence acks_late), explicitly named.

`ingest.export_pending` (queue `export`) is published by name after commit (ingest/outbox.py) and
by the sweeper; `ingest.export_recover` (queue `recovery`, its own worker, so it never waits
behind the export work it recovers) settles batches whose worker died or whose call timed out;
`ingest.export_sweep` (queue `maintenance`, database only, so it runs on time even while export is
stuck on BigQuery) logs lag and backlog, skips unconsented rows, and kicks export and recovery
(so a lost message only delays export); `ingest.retention` deletes old exported rows hourly.
"""

import logging
import random

from celery import Task, shared_task

from ingest import partitions
from ingest.services import export as export_service
from ingest.services import retention as retention_service
from saastracker.redis_client import get_redis

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
# Short: a sink that comes back is used again within seconds (issue 9: within 30 s), and a failed
# try costs one refused connection or one timeout; queued kicks wait behind the backoff (below).
EXPORT_BACKOFF_CAP_SECONDS = 10.0
# Above this lag the sweep logs at WARNING, so a stuck export shows up in the logs people watch.
EXPORT_LAG_WARNING_SECONDS = 300.0
_FANOUT_KEY = "ingest:export:fanout"
_BACKOFF_KEY = "ingest:export:backoff"


def _backoff(retries: int, *, base: float = 2.0, cap: float = 120.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**retries))  # noqa: S311 (jitter, not security)


def _redis_set_nx(key: str, seconds: int) -> bool:
    try:
        return bool(get_redis().set(key, "1", nx=True, ex=max(1, seconds)))
    except Exception:  # Redis down: fail open, the worst case is an extra task
        return True


def _redis_set(key: str, seconds: int) -> None:
    try:
        get_redis().set(key, "1", ex=max(1, seconds))
    except Exception:  # Redis down: fail open, kicks are then simply not skipped
        logger.warning("could not record the export backoff in Redis")


def _redis_exists(key: str) -> bool:
    try:
        return bool(get_redis().exists(key))
    except Exception:
        return False


def _fanout() -> None:
    """A backlog: start EXPORT_FANOUT - 1 siblings (at most once every few seconds per cluster)."""
    from django.conf import settings

    if settings.EXPORT_FANOUT > 1 and _redis_set_nx(_FANOUT_KEY, 5):
        for _ in range(settings.EXPORT_FANOUT - 1):
            export_pending.apply_async(kwargs={"fanout": False}, retry=False)


@shared_task(
    name="ingest.export_pending",
    bind=True,
    acks_late=True,
    soft_time_limit=export_service.EXPORT_SOFT_TIME_LIMIT,
    time_limit=export_service.EXPORT_HARD_TIME_LIMIT,
    max_retries=MAX_RETRIES,
)
def export_pending(self: Task, fanout: bool = True) -> dict:
    """Drain pending rows to BigQuery; back off and retry while BigQuery is down, pushing back or hung.

    While one task backs off, fresh kicks (one a second per web process) return at once: the
    retrying task will export their rows, and a hung sink does not tie up a worker per kick.
    """
    if not self.request.retries and _redis_exists(_BACKOFF_KEY):
        return {"skipped": "backing off"}
    report = export_service.export_drain(on_backlog=_fanout if fanout else None)
    if report.back_off and self.request.retries < MAX_RETRIES:
        countdown = _backoff(self.request.retries, cap=EXPORT_BACKOFF_CAP_SECONDS)
        _redis_set(_BACKOFF_KEY, int(countdown) + 1)
        raise self.retry(countdown=countdown)
    if report.more:  # budget used up with a backlog left: hand over to a fresh task (time limits)
        export_pending.apply_async(kwargs={"fanout": False}, retry=False)
    return report.as_dict()


@shared_task(
    name="ingest.export_recover",
    acks_late=True,
    soft_time_limit=export_service.EXPORT_SOFT_TIME_LIMIT,
    time_limit=export_service.EXPORT_HARD_TIME_LIMIT,
)
def export_recover() -> dict:
    """Settle batches whose lease ran out and mark what landed of batches in doubt, then export.

    Runs on its own queue: during a BigQuery slowdown the export queue is full of tasks waiting on
    BigQuery, and recovery queued behind them would run only after the load is gone (issue 17, 1b).
    """
    recovered = export_service.exports_recover()
    if recovered.requeued:
        export_pending.apply_async(retry=False)
    return recovered.as_dict()


@shared_task(name="ingest.export_sweep", acks_late=True, soft_time_limit=20, time_limit=30)
def export_sweep() -> dict:
    """Log lag and backlog, and kick export and recovery; reads only PostgreSQL, so it is never stuck."""
    skipped = export_service.sdk_unconsented_skip()
    status = export_service.export_status_get()
    log = logger.warning if status.enabled and status.lag_seconds > EXPORT_LAG_WARNING_SECONDS else logger.info
    log(
        "export status: %s lag=%.1fs pending=%d sending=%d dead=%d in_flight_batches=%d expired_batches=%d skipped=%d",
        "on" if status.enabled else "off (no BIGQUERY_PROJECT)",
        status.lag_seconds,
        status.pending_count,
        status.sending_count,
        status.dead_count,
        status.batches_in_flight,
        status.batches_expired,
        skipped,
    )
    if status.enabled:
        if status.batches_expired or export_service.export_batches_in_doubt_count():
            # expires: while BigQuery cannot answer, kicks older than a sweep period are dropped
            export_recover.apply_async(retry=False, expires=10)
        if status.pending_count and not _redis_exists(_BACKOFF_KEY):
            export_pending.apply_async(retry=False)
    return {
        "enabled": status.enabled,
        "lag_seconds": status.lag_seconds,
        "pending": status.pending_count,
        "sending": status.sending_count,
        "dead": status.dead_count,
    }


@shared_task(name="ingest.partitions_maintain", acks_late=True, soft_time_limit=300, time_limit=360)
def partitions_maintain() -> dict:
    """Make the raw tables' next partitions ahead of time, and start a new one each week."""
    return partitions.partitions_maintain()


@shared_task(
    name="ingest.retention",
    bind=True,
    acks_late=True,
    soft_time_limit=1500,
    time_limit=1800,
    max_retries=3,
)
def retention(self: Task) -> dict:
    """Delete exported rows past each company's retention, and expired idempotency keys."""
    try:
        return retention_service.retention_apply()
    except Exception as exc:  # a database hiccup: the next run (or a retry) finishes the job
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, base=30.0, cap=600.0)) from exc
