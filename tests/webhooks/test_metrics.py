"""Webhook gauges and the delivery latency histogram on /metrics (issue 17, items 1d and 5)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import IdentifyLinkFactory, SdkEventFactory, WebhookMessageFactory
from tests.test_metrics import samples, value
from webhooks.models import WebhookEndpoint

from .conftest import run_worker_once

pytestmark = pytest.mark.django_db

LATENCY = "saastracker_webhook_delivery_latency_seconds"


def scrape(client) -> dict:
    return samples(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())


def test_latency_runs_from_ingest_to_the_receivers_2xx(client, application, make_endpoint, receiver):
    # Given an event received 40 s ago whose webhook has not gone out yet
    make_endpoint(event_types=["onboarding.started", "user.identified"])
    received = timezone.now() - timedelta(seconds=40)
    SdkEventFactory(
        application=application, event_name="onboarding_flow_started", webhook_pending=True, received_at=received
    )
    IdentifyLinkFactory(application=application, webhook_pending=True, received_at=received)
    before = scrape(client)

    # When the worker delivers them at the first attempt
    run_worker_once()
    assert len(receiver.requests) == 2

    # Then two first-attempt latencies of about 40 s each are observed (not the seconds since fan-out)
    after = scrape(client)
    count = value(after, f"{LATENCY}_count", attempt="first") - value(before, f"{LATENCY}_count", attempt="first")
    total = value(after, f"{LATENCY}_sum", attempt="first") - value(before, f"{LATENCY}_sum", attempt="first")
    assert count == 2
    assert 80 <= total < 100
    in_30 = value(after, f"{LATENCY}_bucket", attempt="first", le="30.0") - value(
        before, f"{LATENCY}_bucket", attempt="first", le="30.0"
    )
    assert in_30 == 0


def test_a_delivery_after_failed_attempts_counts_as_a_retry(client, application, make_endpoint, receiver):
    make_endpoint()
    receiver.script(500, 200)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)
    before = scrape(client)

    run_worker_once()

    after = scrape(client)
    assert value(after, f"{LATENCY}_count", attempt="retry") - value(before, f"{LATENCY}_count", attempt="retry") == 1
    assert value(after, f"{LATENCY}_count", attempt="first") == value(before, f"{LATENCY}_count", attempt="first")


def test_the_oldest_due_message_is_scraped_and_a_disabled_endpoints_are_left_out(client, make_endpoint):
    # Given a message due 5 minutes ago, one due later, and an older one of a disabled endpoint
    endpoint, _ = make_endpoint()
    off, _ = make_endpoint()
    WebhookEndpoint.objects.filter(pk=off.pk).update(is_active=False)
    now = timezone.now()
    WebhookMessageFactory(endpoint=endpoint, next_attempt_at=now - timedelta(minutes=5))
    WebhookMessageFactory(endpoint=endpoint, next_attempt_at=now + timedelta(minutes=5))
    WebhookMessageFactory(endpoint=off, next_attempt_at=now - timedelta(hours=3))

    scraped = scrape(client)

    # Then the gauge says how long the oldest due message of an active endpoint has waited
    assert 300 <= value(scraped, "saastracker_webhook_oldest_due_seconds") < 330
    assert value(scraped, "saastracker_webhook_messages_pending") == 3


def test_no_due_message_reads_zero(client):
    assert value(scrape(client), "saastracker_webhook_oldest_due_seconds") == 0
    assert ("saastracker_webhook_oldest_due_seconds", frozenset()) in scrape(client)
