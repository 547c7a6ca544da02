"""Fan-out and delivery (webhooks/services.py) against a real HTTP receiver on loopback."""

import base64
import json

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from tests.factories import (
    ApplicationFactory,
    EventFactory,
    IdentifyLinkFactory,
    SdkEventFactory,
    WebhookMessageFactory,
)
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from webhooks.services import endpoint_rotate_secret, messages_deliver
from webhooks.tasks import deliver_message, fanout_pending

from .conftest import run_worker_once, verify

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("event_name", "webhook_type"),
    [
        ("onboarding_flow_started", "onboarding.started"),
        ("onboarding_flow_completed", "onboarding.completed"),
        ("experiment_exposure", "experiment.exposure"),
    ],
)
def test_each_sdk_trigger_delivers_once_with_a_valid_signature(
    application, make_endpoint, receiver, event_name, webhook_type
):
    # Given an endpoint subscribed to the type, and a stored consented SDK event flagged for webhooks
    _, secret = make_endpoint(event_types=[webhook_type])
    row = SdkEventFactory(
        application=application, event_name=event_name, webhook_pending=True, properties={"flow": "intro"}
    )

    # When the worker runs (twice: a repeat must not send it again)
    run_worker_once()
    run_worker_once()

    # Then the receiver got exactly one request, signed, carrying the event
    assert len(receiver.requests) == 1
    payload = verify(secret, receiver.requests[0])
    assert payload["type"] == webhook_type
    assert payload["timestamp"].endswith("Z")
    assert payload["data"]["app_uuid"] == str(application.uuid)
    assert payload["data"]["event_id"] == str(row.event_id)
    assert payload["data"]["event_name"] == event_name
    assert payload["data"]["properties"] == {"flow": "intro"}
    assert payload["data"]["user"]["anon_id"] == str(row.anon_id)
    row.refresh_from_db()
    assert row.webhook_pending is False


def test_a_v1_event_triggers_too(application, make_endpoint, receiver):
    _, secret = make_endpoint(event_types=["onboarding.completed"])
    row = EventFactory(application=application, event="onboarding_flow_completed", webhook_pending=True)

    run_worker_once()

    [request] = receiver.wait_for(1)
    payload = verify(secret, request)
    assert payload["type"] == "onboarding.completed"
    assert payload["data"]["event_id"] == str(row.event_id)
    assert payload["data"]["customer_org_id"] == row.customer_org_id


def test_identify_sends_user_identified_with_anon_and_user_ids(application, make_endpoint, receiver):
    _, secret = make_endpoint(event_types=["user.identified"])
    link = IdentifyLinkFactory(application=application, user_id="user-12345", webhook_pending=True)

    run_worker_once()

    [request] = receiver.requests
    payload = verify(secret, request)
    assert payload["type"] == "user.identified"
    assert payload["data"] == {
        "app_uuid": str(application.uuid),
        "link_id": str(link.link_id),
        "anon_id": str(link.anon_id),
        "user_id": "user-12345",
        "identified_at": payload["data"]["identified_at"],
    }


def test_an_event_without_analytics_consent_sends_nothing(application, make_endpoint, receiver):
    make_endpoint(event_types=["onboarding.started"])
    # Even if a row were flagged by mistake, consent false never leaves the building.
    SdkEventFactory(
        application=application, event_name="onboarding_flow_started", consent_analytics=False, webhook_pending=True
    )

    run_worker_once()

    assert receiver.requests == []
    assert not WebhookMessage.objects.exists()


def test_only_matching_endpoints_get_the_message(company, application, make_endpoint, receiver):
    # Given endpoints: right type for all apps, right type for another app, wrong type, inactive, other company
    make_endpoint(event_types=["onboarding.started"])
    make_endpoint(event_types=["onboarding.started"], application=ApplicationFactory(company=company))
    make_endpoint(event_types=["experiment.exposure"])
    inactive, _ = make_endpoint(event_types=["onboarding.started"])
    WebhookEndpoint.objects.filter(pk=inactive.pk).update(is_active=False)
    other = ApplicationFactory()
    make_endpoint(event_types=["onboarding.started"], company=other.company)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    assert len(receiver.requests) == 1
    assert WebhookMessage.objects.count() == 1


def test_500_twice_then_200_makes_three_attempts_with_the_same_webhook_id(application, make_endpoint, receiver):
    _, secret = make_endpoint()
    receiver.script(500, 500, 200)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    requests = receiver.wait_for(3)
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for request in requests:
        verify(secret, request)
    message = WebhookMessage.objects.get()
    assert message.state == WebhookMessage.State.DELIVERED
    assert [a.status_code for a in message.attempts.order_by("attempted_at", "id")] == [500, 500, 200]


def test_a_message_fails_once_the_schedule_is_spent(application, make_endpoint, receiver):
    receiver.default_status = 500
    endpoint, _ = make_endpoint()
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    # schedule [0, 0, 0]: the first attempt plus three retries
    assert len(receiver.requests) == 4
    message = WebhookMessage.objects.get()
    assert message.state == WebhookMessage.State.FAILED
    assert message.attempts.count() == 4
    endpoint.refresh_from_db()
    assert endpoint.is_active is True
    assert endpoint.failing_since is not None


def test_410_gone_disables_the_endpoint(application, make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    receiver.script(410)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    assert len(receiver.requests) == 1
    endpoint.refresh_from_db()
    assert endpoint.is_active is False
    assert "410" in endpoint.disabled_reason


def test_failing_longer_than_the_limit_disables_the_endpoint(settings, application, make_endpoint, receiver):
    settings.WEBHOOK_DISABLE_AFTER_SECONDS = 0
    receiver.default_status = 502
    endpoint, _ = make_endpoint()
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    endpoint.refresh_from_db()
    assert endpoint.is_active is False
    assert "failed" in endpoint.disabled_reason


def test_a_receiver_down_then_up_gets_the_message(application, make_endpoint, receiver):
    _, secret = make_endpoint()
    receiver.down()
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)
    fanout_pending()
    message = WebhookMessage.objects.get()
    deliver_message(message.id)
    attempt = message.attempts.get()
    assert attempt.status_code is None
    assert attempt.error  # connection refused, recorded

    receiver.up()
    run_worker_once()

    [request] = receiver.wait_for(1)
    assert verify(secret, request)["type"] == "onboarding.started"
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.DELIVERED


def test_a_private_target_is_refused_without_the_setting(settings, application, make_endpoint, receiver):
    make_endpoint()  # saved while allowed: the send-time check still refuses (DNS can change)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    assert receiver.requests == []
    attempt = WebhookMessage.objects.get().attempts.first()
    assert "refused" in attempt.error


def test_secret_rotation_sends_two_signatures_that_both_verify(application, make_endpoint, receiver):
    endpoint, old_secret = make_endpoint()
    new_secret = endpoint_rotate_secret(endpoint=endpoint)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(old_secret, request)["type"] == "onboarding.started"
    assert verify(new_secret, request)["type"] == "onboarding.started"
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 44, request)


def test_the_attempt_log_keeps_the_answer(application, make_endpoint, receiver):
    make_endpoint()
    receiver.script(500)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    first = WebhookMessage.objects.get().attempts.order_by("id").first()
    assert first.status_code == 500
    assert json.loads(first.response_body) == {"status": 500}


def test_retry_after_on_429_is_honoured(application, make_endpoint, receiver):
    make_endpoint()
    receiver.script((429, {"Retry-After": "120"}))
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    assert len(receiver.requests) == 1  # not retried at once despite the 0 s schedule
    message = WebhookMessage.objects.get()
    assert message.state == WebhookMessage.State.PENDING
    wait = (message.next_attempt_at - message.attempts.get().attempted_at).total_seconds()
    assert 115 < wait < 125


def test_retries_follow_the_schedule_with_jitter(settings, application, make_endpoint, receiver):
    settings.WEBHOOK_RETRY_SCHEDULE = [100, 1000]
    make_endpoint()
    receiver.script(500)
    SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)

    run_worker_once()

    message = WebhookMessage.objects.get()
    wait = (message.next_attempt_at - message.attempts.get().attempted_at).total_seconds()
    assert 79 < wait < 121


def test_new_secrets_follow_the_whsec_format(make_endpoint):
    _, secret = make_endpoint()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64


def test_a_batch_hands_back_what_its_time_budget_does_not_cover(monkeypatch, make_endpoint, receiver):
    monkeypatch.setattr(services, "DELIVER_CHUNK", 1)  # one message per chunk, so the budget bites at once
    endpoint, _ = make_endpoint()
    messages = [WebhookMessageFactory(endpoint=endpoint) for _ in range(3)]

    outcomes = messages_deliver(message_ids=[m.pk for m in messages], budget_seconds=0)

    assert outcomes == {"delivered": 1, "handed-back": 2}
    assert [r.headers["webhook-id"] for r in receiver.requests] == [messages[0].pk]
    assert WebhookMessage.objects.filter(state=WebhookMessage.State.PENDING).count() == 2


def test_a_chunk_is_sent_concurrently_and_recorded_per_message(make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    receiver.script(200, 503, 200)  # whichever arrives second fails
    messages = [WebhookMessageFactory(endpoint=endpoint) for _ in range(3)]

    outcomes = messages_deliver(message_ids=[m.pk for m in messages])

    assert outcomes == {"delivered": 2, "retry": 1}
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(m.pk for m in messages)
    assert WebhookMessage.objects.filter(state="delivered", attempt_count=1).count() == 2
    assert WebhookMessage.objects.filter(state="pending", attempt_count=1).count() == 1
    assert sorted(a.status_code for a in WebhookAttempt.objects.all()) == [200, 200, 503]
