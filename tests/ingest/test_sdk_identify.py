"""POST /api/v1/ingest/identify: linking an anonymous device to a known user."""

import gzip
import json
import uuid

import pytest

from ingest.models import ExportState, IdentifyLink
from tests.factories import ApplicationFactory, SdkKeyFactory

from .sdk_helpers import IDENTIFY_URL, post_raw

pytestmark = pytest.mark.django_db


def identify(client, key, payload):
    return post_raw(client, IDENTIFY_URL, json.dumps(payload).encode(), key=key)


def test_identify_links_the_device_to_the_user(api_client, application, sdk_key):
    anon_id = str(uuid.uuid4())

    response = identify(api_client, sdk_key, {"anon_id": anon_id, "user_id": "user-12345"})

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "created": True}
    link = IdentifyLink.objects.get()
    assert (str(link.anon_id), link.user_id) == (anon_id, "user-12345")
    assert (link.application_id, link.company_id) == (application.id, application.company_id)
    assert link.webhook_pending is True
    assert link.export_state == ExportState.PENDING


def test_a_repeat_is_harmless_and_owes_no_second_webhook(api_client, sdk_key):
    payload = {"anon_id": str(uuid.uuid4()), "user_id": "user-1"}
    identify(api_client, sdk_key, payload)
    first = IdentifyLink.objects.get()
    IdentifyLink.objects.update(webhook_pending=False)  # as the webhook fan-out does once it has run

    response = identify(api_client, sdk_key, payload)

    assert response.json() == {"status": "ok", "created": False}
    link = IdentifyLink.objects.get()
    assert link.link_id == first.link_id
    assert link.webhook_pending is False
    assert link.last_seen_at >= first.last_seen_at


def test_history_of_links_is_kept(api_client, sdk_key):
    anon_id = str(uuid.uuid4())

    identify(api_client, sdk_key, {"anon_id": anon_id, "user_id": "alice"})
    identify(api_client, sdk_key, {"anon_id": anon_id, "user_id": "bob"})

    assert sorted(IdentifyLink.objects.values_list("user_id", flat=True)) == ["alice", "bob"]


def test_same_link_in_two_apps_is_two_links(api_client, sdk_key):
    other_key = SdkKeyFactory(application=ApplicationFactory()).raw_key
    payload = {"anon_id": str(uuid.uuid4()), "user_id": "alice"}

    identify(api_client, sdk_key, payload)
    second = identify(api_client, other_key, payload)

    assert second.json()["created"] is True
    assert IdentifyLink.objects.count() == 2


def test_new_link_wakes_the_webhook_fanout_and_a_repeat_does_not(
    api_client, sdk_key, django_capture_on_commit_callbacks
):
    payload = {"anon_id": str(uuid.uuid4()), "user_id": "alice"}
    with django_capture_on_commit_callbacks() as first:
        identify(api_client, sdk_key, payload)
    with django_capture_on_commit_callbacks() as repeat:
        identify(api_client, sdk_key, payload)

    assert len(first) == 1
    assert repeat == []


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"user_id": "u"}, "anon_id", "is required"),
        ({"anon_id": None, "user_id": "u"}, "anon_id", "is required"),
        ({"anon_id": "device-1", "user_id": "u"}, "anon_id", "must be a UUID string"),
        ({"anon_id": 7, "user_id": "u"}, "anon_id", "must be a UUID string"),
        ({"anon_id": "UUID"}, "user_id", "is required"),
        ({"anon_id": "UUID", "user_id": None}, "user_id", "is required"),
        ({"anon_id": "UUID", "user_id": 42}, "user_id", "must be a string"),
        ({"anon_id": "UUID", "user_id": "  "}, "user_id", "must not be empty"),
        ({"anon_id": "UUID", "user_id": "u" * 256}, "user_id", "at most 255 characters"),
        ({"anon_id": "UUID", "user_id": "a\x00b"}, "user_id", "NUL"),
    ],
)
def test_invalid_field_is_400_naming_it(api_client, sdk_key, payload, field, message):
    if payload.get("anon_id") == "UUID":
        payload["anon_id"] = str(uuid.uuid4())

    response = identify(api_client, sdk_key, payload)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_failed"
    assert [d["field"] for d in body["details"]] == [field]
    assert message in body["details"][0]["message"]
    assert IdentifyLink.objects.count() == 0


def test_both_fields_wrong_are_both_named(api_client, sdk_key):
    body = identify(api_client, sdk_key, {}).json()

    assert [d["field"] for d in body["details"]] == ["anon_id", "user_id"]


@pytest.mark.parametrize("body", [b"nope", b"[]", b'"x"', b""])
def test_body_that_is_not_a_json_object_is_400(api_client, sdk_key, body):
    response = post_raw(api_client, IDENTIFY_URL, body, key=sdk_key)

    assert response.status_code == 400


def test_identify_needs_a_valid_key(api_client, application):
    payload = {"anon_id": str(uuid.uuid4()), "user_id": "u"}

    assert identify(api_client, None, payload).status_code == 401
    assert identify(api_client, "sdk_unknown", payload).status_code == 401
    assert IdentifyLink.objects.count() == 0


def test_identify_accepts_gzip(api_client, sdk_key):
    body = gzip.compress(json.dumps({"anon_id": str(uuid.uuid4()), "user_id": "u"}).encode())

    response = post_raw(api_client, IDENTIFY_URL, body, key=sdk_key, **{"Content-Encoding": "gzip"})

    assert response.json()["created"] is True


def test_identify_is_post_only(api_client, sdk_key):
    assert api_client.get(IDENTIFY_URL, headers={"x-api-key": sdk_key}).status_code == 405


def test_identify_body_over_the_limit_is_413(api_client, sdk_key, settings):
    settings.INGEST_SDK_MAX_BODY_BYTES = 64
    payload = {"anon_id": str(uuid.uuid4()), "user_id": "u" * 100}

    response = identify(api_client, sdk_key, payload)

    assert response.status_code == 413
    assert IdentifyLink.objects.count() == 0


def test_identify_wrong_content_type_is_415(api_client, sdk_key):
    response = post_raw(api_client, IDENTIFY_URL, b"{}", key=sdk_key, content_type="text/plain")

    assert response.status_code == 415


def test_identify_is_rate_limited_per_app(api_client, sdk_key, settings):
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 1
    payload = {"anon_id": str(uuid.uuid4()), "user_id": "u"}

    assert identify(api_client, sdk_key, payload).status_code == 200
    limited = identify(api_client, sdk_key, payload)

    assert limited.status_code == 429
    assert limited["Retry-After"]
