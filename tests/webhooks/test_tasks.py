"""The Celery side (webhooks/tasks.py) with a real worker consuming the test Redis broker."""

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import transaction
from django.utils import timezone

from ingest import outbox
from saastracker.celery import app
from tests.factories import ApplicationFactory, SdkEventFactory, WebhookMessageFactory
from webhooks.models import WebhookMessage
from webhooks.services import endpoint_create
from webhooks.tasks import deliver_message, sweep_due

from .conftest import verify


@pytest.fixture
def worker(transactional_db):
    """A Celery worker thread on the test broker (Redis db of TEST_REDIS_URL), running our tasks."""
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10, loglevel="WARNING") as w:
        yield w


@pytest.fixture
def live_endpoint(transactional_db, receiver):
    application = ApplicationFactory()
    created = endpoint_create(
        company=application.company, url=receiver.url, event_types=["onboarding.started", "user.identified"]
    )
    return application, created.endpoint, created.secret


@pytest.mark.slow
def test_a_committed_trigger_is_delivered_by_the_worker(worker, live_endpoint, receiver):
    # Given a stored trigger row, committed with its outbox flag, and the kick ingest sends after commit
    application, _, secret = live_endpoint
    with transaction.atomic():
        row = SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)
        outbox.kick(export=False, webhooks=True)

    # When the worker picks it up, then the receiver gets one signed message
    [request] = receiver.wait_for(1, timeout=15)
    payload = verify(secret, request)
    assert payload["data"]["event_id"] == str(row.event_id)


@pytest.mark.slow
def test_the_sweeper_recovers_a_delivery_whose_broker_message_was_lost(worker, live_endpoint, receiver):
    # Given a message owed since a minute ago whose broker message never arrived
    _, endpoint, secret = live_endpoint
    message = WebhookMessageFactory(
        endpoint=endpoint,
        payload={"type": "onboarding.started", "timestamp": "2026-01-01T00:00:00Z", "data": {}},
        next_attempt_at=timezone.now() - timedelta(minutes=1),
    )
    assert receiver.wait_for(1, timeout=1) == []  # nobody is going to send it on their own

    # When the periodic sweep runs (published through the broker, as beat does)
    sweep_due.delay()

    # Then it is delivered, with its own id
    [request] = receiver.wait_for(1, timeout=15)
    assert request.headers["webhook-id"] == message.id
    verify(secret, request)


@pytest.mark.slow
def test_a_duplicate_delivery_task_sends_once(worker, live_endpoint, receiver):
    _, endpoint, _ = live_endpoint
    message = WebhookMessageFactory(endpoint=endpoint)

    for _ in range(3):  # the broker redelivers (acks_late, a worker restart...)
        deliver_message.delay(message.id)

    receiver.wait_for(2, timeout=3)
    assert len(receiver.requests) == 1
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.DELIVERED
