"""Scrape-time gauges of webhook delivery, read from PostgreSQL (see saastracker/metrics.py)."""

from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from .models import WebhookEndpoint, WebhookMessage


def webhooks_collect() -> Iterable[Metric]:
    """Messages still owed (pending, through the due-time partial index), the oldest due, endpoints disabled.

    The count alone missed a stalled worker for 14 minutes (issue 17, item 1d): a few thousand
    pending is normal under load, but nothing due should wait more than a sweep or two, so the age
    of the oldest due message (of an active endpoint) is what says delivery stopped.
    """
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '2s'")
        pending_count = WebhookMessage.objects.filter(state=WebhookMessage.State.PENDING).count()
        oldest = (
            WebhookMessage.objects.filter(
                state=WebhookMessage.State.PENDING, next_attempt_at__lte=now, endpoint__is_active=True
            )
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        disabled_count = WebhookEndpoint.objects.filter(is_active=False).count()
    pending = GaugeMetricFamily("saastracker_webhook_messages_pending", "Webhook messages not delivered yet.")
    pending.add_metric([], pending_count)
    oldest_due = GaugeMetricFamily(
        "saastracker_webhook_oldest_due_seconds",
        "How long the oldest message due for an attempt (of an active endpoint) has waited (0: none).",
    )
    oldest_due.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    disabled = GaugeMetricFamily(
        "saastracker_webhook_endpoints_disabled", "Webhook endpoints switched off (by hand or after failing for days)."
    )
    disabled.add_metric([], disabled_count)
    return [pending, oldest_due, disabled]
