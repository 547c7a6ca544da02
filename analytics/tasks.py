"""Celery tasks of analytics: thin adapters over the fold and the organizations scan.

`analytics.fold_pending` is run by beat every few seconds (a sweep: rows are found through the fold
queue, so a lost message only delays folding) and hands itself over to a fresh task while a backlog
remains. After a fold, each app that got new events has its scan scheduled at most once per
ANALYTICS_SCAN_DEBOUNCE_SECONDS, to run that long later; `analytics.scan_daily` rescans every app.
"""

import logging
import random

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from apps_registry.models import Application
from revenue.models import Subscription
from saastracker.redis_client import get_redis

from . import fold, health
from .funnel_events import funnel_events_prune
from .models import Organization

logger = logging.getLogger(__name__)

FOLD_SOFT_TIME_LIMIT = 55
FOLD_HARD_TIME_LIMIT = 60
_SCAN_KEY = "analytics:scan:{}"


def _scan_debounced(app_id: int) -> None:
    """Schedule one scan per app per debounce period; a Redis outage schedules one anyway."""
    delay = settings.ANALYTICS_SCAN_DEBOUNCE_SECONDS
    try:
        first = bool(get_redis().set(_SCAN_KEY.format(app_id), "1", nx=True, ex=max(1, delay)))
    except Exception:  # Redis down: fail open, the worst case is an extra scan
        first = True
    if first:
        scan_app.apply_async(args=[app_id], countdown=delay, retry=False)


@shared_task(
    name="analytics.fold_pending",
    bind=True,
    acks_late=True,
    soft_time_limit=FOLD_SOFT_TIME_LIMIT,
    time_limit=FOLD_HARD_TIME_LIMIT,
    max_retries=5,
)
def fold_pending(self: Task) -> dict:
    """Fold stored rows into rollups. Idempotent: a row is folded by the transaction deleting its queue entry."""
    try:
        report = fold.fold_drain(
            budget_seconds=FOLD_SOFT_TIME_LIMIT - 10, chunk_size=settings.ANALYTICS_FOLD_CHUNK_SIZE
        )
    except Exception as exc:  # the database went away mid-chunk: that chunk rolled back, retry later
        countdown = random.uniform(0, min(60.0, 2.0 * 2**self.request.retries))  # noqa: S311 (jitter)
        raise self.retry(exc=exc, countdown=countdown) from exc
    for app_id in report.applications:
        _scan_debounced(app_id)
    if report.more:
        fold_pending.apply_async(retry=False)
    return report.as_dict()


@shared_task(name="analytics.scan_app", acks_late=True, soft_time_limit=50, time_limit=60)
def scan_app(app_id: int, after_id: int = 0) -> dict:
    """Rescore one chunk of an app's orgs (ANALYTICS_SCAN_CHUNK_ORGS), then queue the next chunk.

    A chunk is a short task, so a tenant with 50,000 orgs takes turns with every other app's scans on
    the `scans` queue instead of holding a worker for a minute; folds run on their own queue.
    """
    app = Application.objects.select_related("company__plan").filter(pk=app_id).first()
    if app is None:
        return {}
    part = health.organizations_scan_chunk(app=app, now=timezone.now(), after_id=after_id)
    if part.next_after is not None:
        scan_app.apply_async(args=[app_id, part.next_after], retry=False)
    return {"orgs": part.orgs, "raised": part.raised, "cleared": part.cleared, "next_after": part.next_after}


def scan_after_import(sender: object, *, application: Application, **kwargs: object) -> None:
    """Receiver of revenue's `import_applied`: money changed, so signals may have (issue 20)."""
    _scan_debounced(application.pk)


@shared_task(name="analytics.scan_daily", acks_late=True, soft_time_limit=280, time_limit=300)
def scan_daily() -> int:
    """Scores age without events: rescan every app that has organizations (or subscriptions: issue 20)."""
    app_ids = sorted(
        set(Organization.objects.values_list("application_id", flat=True).distinct())
        | set(Subscription.objects.values_list("application_id", flat=True).distinct())
    )
    for app_id in app_ids:
        scan_app.apply_async(args=[app_id], retry=False)
    return len(app_ids)


@shared_task(name="analytics.funnel_events_prune", acks_late=True, soft_time_limit=280, time_limit=300)
def funnel_events_prune_daily() -> int:
    """Funnels' narrow rows past retention (analytics/funnel_events.py); idempotent."""
    return funnel_events_prune()
