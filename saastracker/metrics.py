"""Prometheus metrics: every metric the service exposes, and the `GET /metrics` view.

Counters and histograms are updated where the work happens (the request middleware, group commit,
the webhook recorder, Celery signals). With several processes (granian workers, Celery's prefork
children) prometheus-client's multiprocess mode keeps one memory-mapped file per process under
`PROMETHEUS_MULTIPROC_DIR`; `scripts/serve` and `scripts/worker` point it at `$METRICS_DIR/web`
and `$METRICS_DIR/worker` (emptied at start), and the view sums every file under `METRICS_DIR`.
Without that variable (tests, `runserver`) the values live in the process.

Gauges that describe stored state (rows pending, export lag, webhook backlog) are not kept in
processes at all: they are read from the database at scrape time by the callables listed in
`settings.METRICS_SCRAPE_COLLECTORS`, so they are right whichever process answers. That list is
the extension point for other apps: a callable taking no arguments and returning an iterable of
`prometheus_client.core.Metric` (e.g. `GaugeMetricFamily`), added to the setting. The analytics
fold lag is meant to be added this way (`analytics.metrics.fold_lag_collect`, say), without
touching this module.

Labels never carry unbounded values: endpoints are URL pattern names, reasons are error codes,
tasks are registered task names, tables are the three export tables.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# --- HTTP ------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "saastracker_http_requests",
    "HTTP requests answered, by URL pattern name and status code.",
    ["endpoint", "status"],
)
HTTP_DURATION = Histogram(
    "saastracker_http_request_duration_seconds",
    "Time from the first middleware to the answer, per ingest endpoint (everything else is `other`).",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS_ACCEPTED = Counter(
    "saastracker_events_accepted",
    "Events stored (or recognised as already stored), by API: v1, sdk, identify.",
    ["api"],
)
EVENTS_REJECTED = Counter(
    "saastracker_events_rejected",
    "Events refused, by API and reason (the error code). A whole SDK batch refused before its events "
    "are read (auth, size, envelope) counts once; SDK events refused one by one count as validation_failed.",
    ["api", "reason"],
)
RATE_LIMITED = Counter("saastracker_rate_limited_requests", "Requests answered 429, by API.", ["api"])

# --- Storage ---------------------------------------------------------------------------------
GROUP_COMMIT_ROWS = Histogram(
    "saastracker_group_commit_rows",
    "Rows written by one group-commit statement (concurrent /v1/events of one process).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

# --- Webhooks --------------------------------------------------------------------------------
WEBHOOK_ATTEMPTS = Counter(
    "saastracker_webhook_attempts",
    "Webhook delivery attempts, by outcome: delivered, retry, failed (gave up) or disabled (endpoint).",
    ["outcome"],
)

# Ingest (the event's receive time; for a test message, its creation) to the receiver's 2xx. `attempt`
# is `first` when the first attempt succeeded (our own lag) or `retry` (the receiver failed before).
WEBHOOK_LATENCY = Histogram(
    "saastracker_webhook_delivery_latency_seconds",
    "Seconds from ingest to the receiver's 2xx, by attempt: first (our lag) or retry (the receiver failed before).",
    ["attempt"],
    buckets=(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0),
)

# --- Celery ----------------------------------------------------------------------------------
TASK_RUNS = Counter("saastracker_celery_task_runs", "Celery task runs, by task and final state.", ["task", "state"])
TASK_FAILURES = Counter("saastracker_celery_task_failures", "Celery task runs that raised, by task name.", ["task"])


def group_commit_record(rows: int) -> None:
    if settings.METRICS_ENABLED:
        GROUP_COMMIT_ROWS.observe(rows)


# The API each ingest URL name belongs to (others are not ingest endpoints).
INGEST_APIS = {"v1-events": "v1", "sdk-events": "sdk", "sdk-identify": "identify"}
_DURATION_ENDPOINTS = {*INGEST_APIS, "sdk-health"}


def request_record(*, endpoint: str, status: int, duration: float, response: HttpResponse) -> None:
    """Count one answered request; for ingest endpoints also its events and its duration."""
    if not settings.METRICS_ENABLED:
        return
    HTTP_REQUESTS.labels(endpoint, str(status)).inc()
    HTTP_DURATION.labels(endpoint if endpoint in _DURATION_ENDPOINTS else "other").observe(duration)
    api = INGEST_APIS.get(endpoint)
    if api is None:
        return
    if status == 429:
        RATE_LIMITED.labels(api).inc()
    if status < 300:
        accepted = getattr(response, "events_accepted", 1)
        rejected = getattr(response, "events_rejected", 0)
        if accepted:
            EVENTS_ACCEPTED.labels(api).inc(accepted)
        if rejected:
            EVENTS_REJECTED.labels(api, "validation_failed").inc(rejected)
    else:
        EVENTS_REJECTED.labels(api, getattr(response, "error_code", None) or str(status)).inc()


# --- Exposition ------------------------------------------------------------------------------


class _ScrapeCollector(Collector):
    """Runs the callables of `settings.METRICS_SCRAPE_COLLECTORS`; one failing does not hide the others.

    A collector that fails (PostgreSQL down) cannot give its gauges, and a gauge that vanishes makes
    alert rules see "no data" rather than a problem (issue 17, item 4). So every scrape also says,
    per collector, whether its gauges could be read: `saastracker_state_scrape_ok{collector}` 1 or 0.
    """

    def collect(self) -> Iterable[Metric]:
        scrape_ok = GaugeMetricFamily(
            "saastracker_state_scrape_ok",
            "1 when this scrape could read the collector's stored-state gauges, 0 when it failed (they are missing).",
            labels=["collector"],
        )
        for path in settings.METRICS_SCRAPE_COLLECTORS:
            try:
                families = list(_callable(path)())  # all or nothing: never half a collector's gauges
            except Exception:  # a database hiccup must not make the process metrics disappear
                logger.warning("metrics collector %s failed", path, exc_info=True)
                scrape_ok.add_metric([path.rsplit(".", 1)[-1]], 0)
                continue
            scrape_ok.add_metric([path.rsplit(".", 1)[-1]], 1)
            yield from families
        yield scrape_ok


@cache
def _callable(path: str) -> Callable[[], Iterable[Metric]]:
    return import_string(path)


def registry_build() -> CollectorRegistry:
    """Every process's values (multiprocess mode) or this process's, plus the scrape-time gauges."""
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not multiproc_dir:
        registry = CollectorRegistry()
        registry.register(_RegistryProxy(REGISTRY))
    else:
        registry = CollectorRegistry()
        folders = {Path(multiproc_dir)}
        metrics_dir = os.environ.get("METRICS_DIR")
        if metrics_dir and Path(metrics_dir).is_dir():  # web and worker processes of this machine
            folders.update(p for p in Path(metrics_dir).iterdir() if p.is_dir())
        for folder in sorted(folders):
            MultiProcessCollector(registry, path=str(folder))
    registry.register(_ScrapeCollector())
    return registry


class _RegistryProxy(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


# Any of these on a loopback connection means a proxy on this host forwarded someone else's request.
_FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP", "HTTP_X_CLIENT_IP")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_request_allowed(request: HttpRequest) -> bool:
    """With METRICS_TOKEN set: that bearer token. Without: loopback clients that no proxy forwarded,
    where METRICS_LOOPBACK_ALLOWED (production requires the token unless that is set)."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if not settings.METRICS_LOOPBACK_ALLOWED:
        return False
    forwarded = any(header in request.META for header in _FORWARDING_HEADERS)
    return not forwarded and _is_loopback(request.META.get("REMOTE_ADDR", ""))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics in the Prometheus text format; 404 to anyone not allowed (it is not public)."""
    if not metrics_request_allowed(request):
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    return HttpResponse(generate_latest(registry_build()), content_type=CONTENT_TYPE_LATEST)
