"""GET /metrics: Prometheus text, summed over processes, and never public."""

import gzip
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from ingest.models import Event, ExportState
from tests.export_ledger import in_state
from tests.factories import ApiSecretFactory, ApplicationFactory, EventFactory, SdkEventFactory, SdkKeyFactory
from tests.ingest.sdk_helpers import sdk_event
from tests.ingest.v1_helpers import event_body, sign
from webhooks.tasks import sweep_due

from .fixtures.serve import Server, http


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a Prometheus text answer."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.slow
def test_counters_add_up_across_two_server_processes(serve: Server):
    # Given an application with a secret and an SDK key, served by two granian workers
    app = ApplicationFactory()
    secret = ApiSecretFactory(application=app).secret
    key = SdkKeyFactory(application=app).raw_key

    # When 40 signed events, 3 with a bad signature, and 10 SDK batches of 4 good and 1 bad event
    # arrive, each on a new connection
    for i in range(40):
        body = event_body(customer_org_id=f"org_{i}")
        status, _, _ = http(
            serve,
            "/v1/events",
            method="POST",
            body=body,
            headers={
                "Content-Type": "application/json",
                "x-app-uuid": str(app.uuid),
                "x-signature": sign(secret, body),
            },
        )
        assert status == 202
    for _ in range(3):
        status, _, _ = http(
            serve,
            "/v1/events",
            method="POST",
            body=event_body(),
            headers={"Content-Type": "application/json", "x-app-uuid": str(app.uuid), "x-signature": "0" * 64},
        )
        assert status == 401
    for _ in range(10):
        events = [sdk_event() for _ in range(4)] + [sdk_event(event_name="")]
        body = gzip.compress(json.dumps({"events": events}).encode())
        status, _, answer = http(
            serve,
            "/api/v1/ingest/events",
            method="POST",
            body=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "x-api-key": key},
        )
        assert (status, json.loads(answer)["accepted"]) == (200, 4)

    # Then the scrape counts every request and event exactly once, whichever process served it
    status, headers, text = http(serve, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    scraped = samples(text.decode())
    assert value(scraped, "saastracker_http_requests_total", endpoint="v1-events", status="202") == 40
    assert value(scraped, "saastracker_http_requests_total", endpoint="v1-events", status="401") == 3
    assert value(scraped, "saastracker_http_requests_total", endpoint="sdk-events", status="200") == 10
    assert value(scraped, "saastracker_events_accepted_total", api="v1") == 40
    assert value(scraped, "saastracker_events_accepted_total", api="sdk") == 40
    assert value(scraped, "saastracker_events_rejected_total", api="sdk", reason="validation_failed") == 10
    assert value(scraped, "saastracker_events_rejected_total", api="v1", reason="Invalid signature") == 3
    assert value(scraped, "saastracker_http_request_duration_seconds_count", endpoint="v1-events") == 43
    assert value(scraped, "saastracker_group_commit_rows_sum") == 40
    # ... and both workers served some of them (one value file per process)
    assert len(list((serve.metrics_dir / "web").glob("counter_*.db"))) == 2
    # ... and the stored state is read at scrape time
    assert (
        value(scraped, "saastracker_export_rows", table="events", state="pending")
        == in_state(Event, ExportState.PENDING).count()
    )
    assert value(scraped, "saastracker_export_lag_seconds", table="events") > 0
    assert ("saastracker_webhook_messages_pending", frozenset()) in scraped


@pytest.mark.django_db
def test_metrics_are_served_to_loopback_only_without_a_token(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
    # a proxy on the same host forwards outside clients from loopback: not allowed either
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404


@pytest.mark.django_db
def test_metrics_need_the_bearer_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-token-1"

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer scrape-token-1")
    assert response.status_code == 200
    assert b"saastracker_export_lag_seconds" in response.content


@pytest.mark.django_db
def test_celery_task_runs_are_counted_by_task_name(client):
    def scrape() -> dict:
        return samples(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())

    before = scrape()
    # When a task runs (eagerly: the same signals as in a worker)
    sweep_due.apply()
    after = scrape()

    runs = "saastracker_celery_task_runs_total"
    assert value(after, runs, task="webhooks.sweep_due", state="SUCCESS") == (
        value(before, runs, task="webhooks.sweep_due", state="SUCCESS") + 1
    )


@pytest.mark.django_db
def test_a_registered_collector_adds_its_gauge_and_a_failing_one_hides_nothing(client, settings):
    # The documented hook (e.g. the analytics fold lag): a callable listed in the setting
    settings.METRICS_SCRAPE_COLLECTORS = [
        *settings.METRICS_SCRAPE_COLLECTORS,
        "tests.test_metrics.fold_lag_example",
        "tests.test_metrics.broken_example",
    ]

    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()

    scraped = samples(text)
    assert value(scraped, "saastracker_analytics_fold_lag_seconds") == 12.5
    assert ("saastracker_webhook_messages_pending", frozenset()) in scraped
    # ... and the scrape says which collectors could not be read, instead of only dropping their gauges
    assert value(scraped, "saastracker_state_scrape_ok", collector="broken_example") == 0
    assert value(scraped, "saastracker_state_scrape_ok", collector="export_collect") == 1


def fold_lag_example():
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily("saastracker_analytics_fold_lag_seconds", "Age of the oldest event not folded yet.")
    gauge.add_metric([], 12.5)
    return [gauge]


def broken_example():
    raise RuntimeError("database down")


@pytest.mark.django_db
def test_the_dashboard_and_alerts_use_only_metrics_the_service_exposes(client):
    exposed = {family.name for family in text_string_to_metric_families(client.get("/metrics").content.decode())}
    docs = Path(__file__).resolve().parent.parent / "docs"
    used = set()
    for name in ("grafana-dashboard.json", "alerts.yml"):
        used |= set(re.findall(r"saastracker_[a-z_]+", (docs / name).read_text()))

    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|sum|count)$", "", name)

    # the fold lag comes from the analytics app's collector (the documented hook), when it exists
    assert {family(n) for n in used} - exposed <= {"saastracker_analytics_fold_lag_seconds"}


@pytest.mark.django_db
def test_export_lag_counts_rows_in_flight_and_the_fold_lag_is_scraped(client):
    # Given an old row being sent to BigQuery (not pending) and an old row not yet folded into the rollups
    old = timezone.now() - timedelta(minutes=10)
    EventFactory(export_state=ExportState.SENDING, received_at=old)
    SdkEventFactory(received_at=old - timedelta(minutes=5))

    scraped = samples(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())

    # Then the export lag covers the row in flight, and the fold lag the oldest unfolded row
    assert value(scraped, "saastracker_export_lag_seconds", table="events") >= 600
    assert value(scraped, "saastracker_export_rows", table="events", state="sending") == 1
    assert value(scraped, "saastracker_analytics_fold_lag_seconds") >= 900


@pytest.mark.django_db
def test_a_same_host_proxy_setting_only_x_real_ip_does_not_make_metrics_public(client):
    """nginx's common setup forwards from loopback with only `X-Real-IP`."""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP="203.0.113.9").status_code == 404


@pytest.mark.django_db
def test_metrics_refuse_loopback_without_a_token_unless_allowed(client, settings):
    settings.METRICS_LOOPBACK_ALLOWED = False
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
    settings.METRICS_TOKEN = "scrape-token-2"
    auth = {"HTTP_AUTHORIZATION": "Bearer scrape-token-2"}
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", **auth).status_code == 200
