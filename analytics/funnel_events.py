"""Retention of the funnels' narrow copy of events (analytics_funnelevent, analytics/query/funnel_fast.py).

The fast path answers only funnels whose `from` is after the company's retention horizon (as the
rollup paths), so rows older than it are never read again: they are deleted here, once a day, per
app. A horizon that later moves back (a longer retention) finds the raw rows gone as well: ingest's
retention deleted them.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from apps_registry.models import Application

from .query.accelerated import horizon
from .query.funnel_fast import micros


def funnel_events_prune(*, now: datetime | None = None) -> int:
    """Delete every app's narrow rows older than its retention horizon; how many were deleted."""
    now = now or timezone.now()
    deleted = 0
    for app in Application.objects.select_related("company__plan").order_by("pk"):
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM analytics_funnelevent WHERE application_id = %s AND occurred_us < %s",
                [app.pk, micros(horizon(app, now))],
            )
            deleted += cursor.rowcount
    return deleted
