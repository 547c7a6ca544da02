"""From an ingest request to a signed request at the receiver: the outbox row is the only hand-off."""

import json
import uuid

import pytest

from ingest.models import SdkEvent
from tests.ingest.sdk_helpers import IDENTIFY_URL, post_events, post_raw, sdk_event
from tests.ingest.v1_helpers import event_body as v1_event_body
from tests.ingest.v1_helpers import send as v1_send
from webhooks.models import WebhookMessage

from .conftest import run_worker_once, verify

pytestmark = pytest.mark.django_db


def test_a_sdk_batch_sends_one_webhook_per_consented_trigger(api_client, application, sdk_key, make_endpoint, receiver):
    # Given an endpoint for onboarding.started and experiment.exposure
    _, secret = make_endpoint(event_types=["onboarding.started", "experiment.exposure"])
    started = sdk_event(event_name="onboarding_flow_started", properties={"flow_id": "welcome"})
    exposure = sdk_event(event_name="experiment_exposure", properties={"experiment": "paywall_v2", "variant": "b"})
    no_consent = sdk_event(event_name="onboarding_flow_started", **{"privacy.consent.analytics": False})
    not_a_trigger = sdk_event(event_name="session_start")
    completed = sdk_event(event_name="onboarding_flow_completed")  # a trigger, but not subscribed

    # When the SDK posts the batch and the worker runs
    response = post_events(api_client, sdk_key, [started, exposure, no_consent, not_a_trigger, completed])
    assert response.status_code == 200
    run_worker_once()

    # Then exactly the two consented, subscribed triggers arrive, each signed
    assert len(receiver.requests) == 2
    payloads = {p["data"]["event_id"]: p for p in (verify(secret, r) for r in receiver.requests)}
    assert set(payloads) == {started["event_id"], exposure["event_id"]}
    assert payloads[started["event_id"]]["type"] == "onboarding.started"
    assert payloads[started["event_id"]]["data"]["properties"] == {"flow_id": "welcome"}
    assert payloads[exposure["event_id"]]["type"] == "experiment.exposure"
    assert payloads[exposure["event_id"]]["data"]["app_uuid"] == str(application.uuid)
    assert not SdkEvent.objects.filter(webhook_pending=True).exists()


def test_a_retried_batch_does_not_send_twice(api_client, sdk_key, make_endpoint, receiver):
    make_endpoint()
    event = sdk_event(event_name="onboarding_flow_started")

    post_events(api_client, sdk_key, [event])
    run_worker_once()
    post_events(api_client, sdk_key, [event])  # the SDK retries after a timeout
    run_worker_once()

    assert len(receiver.requests) == 1


def test_identify_sends_user_identified_once_per_link(api_client, application, sdk_key, make_endpoint, receiver):
    _, secret = make_endpoint(event_types=["user.identified"])
    anon_id = str(uuid.uuid4())
    body = json.dumps({"anon_id": anon_id, "user_id": "user-12345"}).encode()

    assert post_raw(api_client, IDENTIFY_URL, body, key=sdk_key).status_code == 200
    run_worker_once()
    assert post_raw(api_client, IDENTIFY_URL, body, key=sdk_key).status_code == 200  # a repeat
    run_worker_once()

    [request] = receiver.requests
    payload = verify(secret, request)
    assert payload["type"] == "user.identified"
    assert payload["data"]["anon_id"] == anon_id
    assert payload["data"]["user_id"] == "user-12345"
    assert payload["data"]["app_uuid"] == str(application.uuid)
    assert WebhookMessage.objects.count() == 1


def test_a_v1_event_sends_its_webhook(api_client, application, api_secret, make_endpoint, receiver):
    _, secret = make_endpoint(event_types=["onboarding.completed"])
    body = v1_event_body(event="onboarding_flow_completed", properties={"step_count": 4})

    response = v1_send(api_client, app_uuid=application.uuid, secret=api_secret, body=body)
    assert response.status_code in (200, 201, 202)
    v1_send(api_client, app_uuid=application.uuid, secret=api_secret, body=v1_event_body(event="page_view"))
    run_worker_once()

    [request] = receiver.requests
    payload = verify(secret, request)
    assert payload["type"] == "onboarding.completed"
    assert payload["data"]["event"] == "onboarding_flow_completed"
    assert payload["data"]["properties"] == {"step_count": 4}
    assert payload["data"]["app_uuid"] == str(application.uuid)
