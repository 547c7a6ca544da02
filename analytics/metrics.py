"""Scrape-time gauge of the analytics fold (see saastracker/metrics.py): the rollup lag."""

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from .fold import fold_lag_seconds


def fold_collect() -> Iterable[Metric]:
    """Age of the oldest stored event not yet folded into the rollups (0: none waits)."""
    lag = GaugeMetricFamily(
        "saastracker_analytics_fold_lag_seconds", "Age of the oldest stored event not yet folded into the rollups."
    )
    lag.add_metric([], fold_lag_seconds())
    return [lag]
