"""Celery tasks for the export and retention: thin, idempotent (hence acks_late), explicitly named.

`ingest.export_pending` is published by name after commit (ingest/outbox.py) and by the sweeper;
`ingest.export_sweep` recovers abandoned batches, logs lag and dead letters, and kicks export
(so a lost message only delays export); `ingest.retention` deletes old exported rows hourly.
"""

import logging
import random

from celery import shared_task

from ingest.services import export as export_service
from ingest.services import retention as retention_service
from saastracker.redis_client import get_redis

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
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
def export_pending(self, fanout: bool = True) -> dict:
    """Drain pending rows to BigQuery; back off and retry while BigQuery is down or pushing back."""
    report = export_service.export_drain(on_backlog=_fanout if fanout else None)
    if (report.unavailable or report.transient) and self.request.retries < MAX_RETRIES:
        countdown = _backoff(self.request.retries)
        _redis_set_nx(_BACKOFF_KEY, int(countdown) + 1)
        raise self.retry(countdown=countdown)
    if report.more:  # budget used up with a backlog left: hand over to a fresh task (time limits)
        export_pending.apply_async(kwargs={"fanout": False}, retry=False)
    return report.as_dict()


@shared_task(name="ingest.export_sweep", acks_late=True, soft_time_limit=50, time_limit=60)
def export_sweep() -> dict:
    """Recover batches of dead workers, log lag and dead letters, and kick export if rows wait."""
    recovered = export_service.exports_recover()
    skipped = export_service.sdk_unconsented_skip()
    status = export_service.export_status_get()
    logger.info(
        "export status: lag=%.1fs dead=%d in_flight_batches=%d recovered=%d skipped=%d",
        status.lag_seconds,
        status.dead_count,
        status.batches_in_flight,
        recovered.claimed,
        skipped,
    )
    if (status.oldest_pending_at is not None or recovered.requeued) and not _redis_exists(_BACKOFF_KEY):
        export_pending.apply_async(retry=False)
    return {
        "lag_seconds": status.lag_seconds,
        "dead": status.dead_count,
        "recovered": recovered.claimed,
    }


@shared_task(
    name="ingest.retention",
    bind=True,
    acks_late=True,
    soft_time_limit=1500,
    time_limit=1800,
    max_retries=3,
)
def retention(self) -> dict:
    """Delete exported rows past each company's retention, and expired idempotency keys."""
    try:
        return retention_service.retention_apply()
    except Exception as exc:  # a database hiccup: the next run (or a retry) finishes the job
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries, base=30.0, cap=600.0)) from exc
