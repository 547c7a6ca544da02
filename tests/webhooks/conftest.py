"""Webhook fixtures: endpoints with real secrets, and a synchronous stand-in for the worker."""

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from webhooks.models import WebhookMessage
from webhooks.services import endpoint_create
from webhooks.tasks import deliver_message, fanout_pending


@pytest.fixture(autouse=True)
def _short_retries(settings):
    """Retries due at once, so a test can run the whole schedule without waiting."""
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def make_endpoint(company, receiver):
    """Create an endpoint through the service; returns (endpoint, raw secret)."""

    def make(event_types=("onboarding.started",), **kwargs):
        kwargs.setdefault("company", company)
        kwargs.setdefault("url", receiver.url)
        created = endpoint_create(event_types=list(event_types), **kwargs)
        return created.endpoint, created.secret

    return make


def run_worker_once(max_rounds: int = 20) -> None:
    """Do what a worker would, in-process: fan out, then deliver every due message until none is due."""
    fanout_pending()
    for _ in range(max_rounds):
        due = list(
            WebhookMessage.objects.filter(
                state=WebhookMessage.State.PENDING, next_attempt_at__lte=timezone.now(), endpoint__is_active=True
            ).values_list("id", flat=True)
        )
        if not due:
            return
        for message_id in due:
            deliver_message(message_id)


def verify(secret: str, request) -> dict:
    """Verify like a receiver would, with the standardwebhooks package; returns the payload."""
    return Webhook(secret).verify(request.body, request.headers)
