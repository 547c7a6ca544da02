"""Scrape-time gauges of the export outbox, read from PostgreSQL (see saastracker/metrics.py).

Each query uses a partial index (pending, dead, sending rows), so a scrape stays cheap however
many rows are stored; an exact count of a very large backlog still walks that backlog's index.
"""

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from .models import ExportState
from .services.export import MODELS, export_oldest_unexported_get


def export_collect() -> Iterable[Metric]:
    """Rows pending, sending and dead-lettered per export table, and the export lag (issue 9, item 10)."""
    rows = GaugeMetricFamily(
        "saastracker_export_rows", "Stored rows still owed to BigQuery, by table and state.", labels=["table", "state"]
    )
    lag = GaugeMetricFamily(
        "saastracker_export_lag_seconds",
        "Age of the oldest row not yet exported (pending or being sent), per table (0: none).",
        labels=["table"],
    )
    now = timezone.now()
    for table, model in MODELS.items():
        pending = model._default_manager.filter(export_state=ExportState.PENDING)
        rows.add_metric([table, "pending"], pending.count())
        rows.add_metric([table, "dead"], model._default_manager.filter(export_state=ExportState.DEAD).count())
        rows.add_metric([table, "sending"], model._default_manager.filter(export_state=ExportState.SENDING).count())
        oldest = export_oldest_unexported_get(queryset=model._default_manager.all())
        lag.add_metric([table], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    return [rows, lag]
