"""Scrape-time gauges of the export outbox, read from PostgreSQL, and of readiness (see saastracker/metrics.py).

The same reads as the admin and the maintenance sweep (`export_backlog_get`): the export ledger's few
rows, the primary key above the cursor, and a pending count that stops at a million rows, so a
scrape stays cheap however large the backlog.
"""

from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from .probes import REQUIRED, readiness
from .services.export import MODELS, export_backlog_get


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
        backlog = export_backlog_get(model=model)
        for state in ("pending", "sending", "dead"):
            rows.add_metric([table, state], getattr(backlog, state))
        oldest = backlog.oldest_unexported_at
        lag.add_metric([table], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    return [rows, lag]


def readiness_collect() -> Iterable[Metric]:
    """What /readyz says, per check (cached verdicts: a scrape adds no probe of its own within the cache).

    `saastracker_readiness_check{check="redis"} 0` with `saastracker_ready 1` is the degraded state:
    events are taken, rate limits fail open (issue 17, item 2).
    """
    checks = readiness()
    check = GaugeMetricFamily(
        "saastracker_readiness_check",
        "1 when the /readyz check passes in this process, 0 when not (redis: degraded, not unready).",
        labels=["check"],
    )
    for name, ok in checks.items():
        check.add_metric([name], 1 if ok else 0)
    ready = GaugeMetricFamily("saastracker_ready", "1 when this process can take events (/readyz answers 200).")
    ready.add_metric([], 1 if all(checks[name] for name in REQUIRED) else 0)
    return [check, ready]
