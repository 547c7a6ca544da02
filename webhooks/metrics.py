"""Scrape-time gauges of webhook delivery, read from PostgreSQL (see saastracker/metrics.py)."""

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from .models import WebhookEndpoint, WebhookMessage


def webhooks_collect() -> Iterable[Metric]:
    """Messages still owed (pending, through the due-time partial index) and endpoints disabled."""
    pending = GaugeMetricFamily("saastracker_webhook_messages_pending", "Webhook messages not delivered yet.")
    pending.add_metric([], WebhookMessage.objects.filter(state=WebhookMessage.State.PENDING).count())
    disabled = GaugeMetricFamily(
        "saastracker_webhook_endpoints_disabled", "Webhook endpoints switched off (by hand or after failing for days)."
    )
    disabled.add_metric([], WebhookEndpoint.objects.filter(is_active=False).count())
    return [pending, disabled]
