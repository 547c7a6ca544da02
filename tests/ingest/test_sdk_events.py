"""POST /api/v1/ingest/events: the SDK batch endpoint, end to end through real PostgreSQL and Redis."""

import gzip
import json
import uuid
import zlib
from datetime import UTC, datetime

import pytest

from apps_registry.services import sdk_key_revoke
from ingest.models import ExportState, SdkEvent
from tests.factories import ApplicationFactory, SdkKeyFactory

from .sdk_helpers import EVENTS_URL, MISSING, post_events, post_raw, sdk_event

pytestmark = pytest.mark.django_db


def test_valid_batch_is_stored_with_every_field(api_client, application, sdk_key):
    # Given two valid events, one of which triggers a webhook
    first = sdk_event(event_name="session_start")
    second = sdk_event(event_name="experiment_exposure", **{"user.user_id": MISSING, "device.platform": "android"})

    # When the SDK sends them
    response = api_client.post(EVENTS_URL, {"events": [first, second]}, format="json", headers={"x-api-key": sdk_key})

    # Then both are accepted and stored with the envelope's values
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "rejected": 0, "errors": []}
    rows = {str(row.event_id): row for row in SdkEvent.objects.filter(application=application)}
    assert set(rows) == {first["event_id"], second["event_id"]}
    stored = rows[first["event_id"]]
    assert stored.company_id == application.company_id
    assert stored.event_name == "session_start"
    assert stored.ts_ms == 1708344000123
    assert stored.occurred_at == datetime(2024, 2, 19, 12, 0, 0, 123000, tzinfo=UTC)
    assert str(stored.anon_id) == first["user"]["anon_id"]
    assert stored.user_id == "user-12345"
    assert (stored.platform, stored.os, stored.app_version, stored.sdk_version) == ("ios", "17.0", "1.0.0", "1.0.0")
    assert (stored.locale, stored.bundle_version, stored.country) == ("en_US", 3.0, "US")
    assert str(stored.session_id) == first["context"]["session_id"]
    assert stored.properties == {"product_id": "premium_monthly", "price": 9.99}
    assert stored.consent_analytics is True
    assert stored.export_state == ExportState.PENDING
    assert stored.webhook_pending is False
    assert stored.received_at is not None
    assert rows[second["event_id"]].user_id is None
    assert rows[second["event_id"]].platform == "android"
    assert rows[second["event_id"]].webhook_pending is True


REQUIRED_FIELDS = [
    "schema_version",
    "event_id",
    "event_name",
    "ts_ms",
    "user",
    "user.anon_id",
    "device",
    "device.platform",
    "device.os",
    "device.app_version",
    "device.sdk_version",
    "device.locale",
    "device.bundle_version",
    "device.country",
    "context",
    "context.session_id",
    "privacy",
    "privacy.consent",
    "privacy.consent.analytics",
]


@pytest.mark.parametrize("absent", [MISSING, None], ids=["missing", "null"])
@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_each_required_field_missing_or_null_is_rejected(api_client, sdk_key, field, absent):
    event = sdk_event(**{field: absent})

    response = post_events(api_client, sdk_key, [event])

    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (0, 1)
    expected_id = None if field == "event_id" else event["event_id"]
    assert body["errors"] == [{"index": 0, "event_id": expected_id, "field": field, "message": "is required"}]
    assert SdkEvent.objects.count() == 0


BAD_VALUES = [
    ("schema_version", 2, "must be the number 1"),
    ("schema_version", "1", "must be the number 1"),
    ("schema_version", True, "must be the number 1"),
    ("event_id", "not-a-uuid", "must be a UUID string"),
    ("event_id", 12, "must be a UUID string"),
    ("event_id", "550e8400e29b41d4a716446655440000", "must be a UUID string"),
    ("event_name", 5, "must be a string"),
    ("event_name", "", "must not be empty"),
    ("event_name", "x" * 256, "at most 255 characters"),
    ("event_name", "a\x00b", "NUL"),
    ("ts_ms", 1708344000000.5, "Unix milliseconds"),
    ("ts_ms", "1708344000000", "Unix milliseconds"),
    ("ts_ms", -1, "Unix milliseconds"),
    ("ts_ms", 10**20, "Unix milliseconds"),
    ("ts_ms", True, "Unix milliseconds"),
    ("user", "anon", "must be an object"),
    ("user.anon_id", "nope", "must be a UUID string"),
    ("user.user_id", 42, "must be a string"),
    ("user.user_id", "u" * 256, "at most 255 characters"),
    ("device", [], "must be an object"),
    ("device.platform", "windows", '"ios" or "android"'),
    ("device.platform", "iOS", '"ios" or "android"'),
    ("device.platform", ["ios"], '"ios" or "android"'),
    ("device.os", 17, "must be a string"),
    ("device.os", "1" * 65, "at most 64 characters"),
    ("device.app_version", 1.0, "must be a string"),
    ("device.sdk_version", False, "must be a string"),
    ("device.locale", {"lang": "en"}, "must be a string"),
    ("device.locale", "e" * 36, "at most 35 characters"),
    ("device.bundle_version", "3", "must be a number"),
    ("device.bundle_version", True, "must be a number"),
    ("device.bundle_version", 10**400, "finite"),
    ("device.country", "USA", "ISO 3166-1 alpha-2"),
    ("device.country", "us", "ISO 3166-1 alpha-2"),
    ("device.country", "QQ", "ISO 3166-1 alpha-2"),
    ("device.country", 1, "ISO 3166-1 alpha-2"),
    ("context", "s", "must be an object"),
    ("context.session_id", "session-1", "must be a UUID string"),
    ("properties", [1, 2], "must be an object"),
    ("properties", "x", "must be an object"),
    ("privacy", True, "must be an object"),
    ("privacy.consent", "yes", "must be an object"),
    ("privacy.consent.analytics", "true", "must be a boolean"),
    ("privacy.consent.analytics", 1, "must be a boolean"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
def test_each_field_rule_names_the_field(api_client, sdk_key, field, value, message):
    event = sdk_event(**{field: value})

    response = post_events(api_client, sdk_key, [event])

    assert response.status_code == 200
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(0, field)]
    assert message in errors[0]["message"]
    assert SdkEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user.user_id", MISSING),
        ("user.user_id", None),
        ("properties", MISSING),
        ("properties", None),
        ("properties", {}),
        ("schema_version", 1.0),
        ("device.bundle_version", 2.5),
        ("device.country", "XK"),
        ("event_id", "550E8400-E29B-41D4-A716-446655440000"),
        ("extra_field_from_a_newer_sdk", {"ignored": True}),
    ],
)
def test_optional_and_lenient_values_are_accepted(api_client, sdk_key, field, value):
    response = post_events(api_client, sdk_key, [sdk_event(**{field: value})])

    assert response.json() == {"accepted": 1, "rejected": 0, "errors": []}
    assert SdkEvent.objects.count() == 1


def test_every_wrong_field_of_an_event_is_listed(api_client, sdk_key):
    event = sdk_event(**{"device.platform": "web", "ts_ms": "now", "privacy.consent.analytics": MISSING})

    body = post_events(api_client, sdk_key, [event]).json()

    assert body["rejected"] == 1
    assert sorted(e["field"] for e in body["errors"]) == ["device.platform", "privacy.consent.analytics", "ts_ms"]
    assert {e["event_id"] for e in body["errors"]} == {event["event_id"]}


def test_an_event_that_is_not_an_object_is_rejected_alone(api_client, sdk_key):
    good = sdk_event()

    body = post_events(api_client, sdk_key, ["oops", good, 7]).json()

    assert body["accepted"] == 1
    assert body["errors"] == [
        {"index": 0, "event_id": None, "field": None, "message": "an event must be a JSON object"},
        {"index": 2, "event_id": None, "field": None, "message": "an event must be a JSON object"},
    ]


def test_event_with_out_of_range_number_in_properties_is_rejected_alone(api_client, sdk_key):
    good = sdk_event()
    body = json.dumps({"events": [good]})[:-2] + ', {"properties": {"x": 1e400}}]}'

    response = post_raw(api_client, EVENTS_URL, body.encode(), key=sdk_key)

    assert response.status_code == 200
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    assert response.json()["errors"][0]["index"] == 1


def test_mixed_batch_stores_the_good_and_reports_the_bad_by_index(api_client, application, sdk_key):
    events = [sdk_event() for _ in range(6)]
    events[1]["device"]["platform"] = "symbian"
    events[4]["user"]["anon_id"] = "x"

    response = post_events(api_client, sdk_key, events)

    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (4, 2)
    assert [(e["index"], e["event_id"], e["field"]) for e in body["errors"]] == [
        (1, events[1]["event_id"], "device.platform"),
        (4, events[4]["event_id"], "user.anon_id"),
    ]
    stored = {str(i) for i in SdkEvent.objects.values_list("event_id", flat=True)}
    assert stored == {events[i]["event_id"] for i in (0, 2, 3, 5)}


def test_duplicate_ids_within_a_batch_are_accepted_and_stored_once(api_client, sdk_key):
    event_id = str(uuid.uuid4())
    first = sdk_event(event_id=event_id, event_name="app_open")
    repeat = sdk_event(event_id=event_id.upper(), event_name="app_close")

    body = post_events(api_client, sdk_key, [first, repeat, sdk_event()]).json()

    assert body == {"accepted": 3, "rejected": 0, "errors": []}
    assert SdkEvent.objects.count() == 2
    assert SdkEvent.objects.get(event_id=event_id).event_name == "app_open"


def test_a_retried_batch_is_accepted_and_not_stored_again(api_client, sdk_key):
    events = [sdk_event() for _ in range(3)]
    assert post_events(api_client, sdk_key, events).json()["accepted"] == 3

    retry = post_events(api_client, sdk_key, [*events, sdk_event()])

    assert retry.json() == {"accepted": 4, "rejected": 0, "errors": []}
    assert SdkEvent.objects.count() == 4


def test_the_same_event_id_in_two_apps_is_two_events(api_client, sdk_key):
    other_key = SdkKeyFactory(application=ApplicationFactory()).raw_key
    event = sdk_event()

    post_events(api_client, sdk_key, [event])
    post_events(api_client, other_key, [event])

    assert SdkEvent.objects.filter(event_id=event["event_id"]).count() == 2


def test_without_consent_events_are_kept_for_audit_only(api_client, sdk_key):
    event = sdk_event(event_name="experiment_exposure", **{"privacy.consent.analytics": False})

    body = post_events(api_client, sdk_key, [event]).json()

    assert body["accepted"] == 1
    stored = SdkEvent.objects.get()
    assert stored.consent_analytics is False
    assert stored.export_state == ExportState.SKIPPED
    assert stored.webhook_pending is False


def test_custom_event_names_are_accepted_like_catalogue_ones(api_client, sdk_key):
    body = post_events(api_client, sdk_key, [sdk_event(event_name="level_up"), sdk_event()]).json()

    assert body["accepted"] == 2
    assert set(SdkEvent.objects.values_list("event_name", flat=True)) == {"level_up", "session_start"}


def test_gzip_body_is_accepted(api_client, sdk_key):
    events = [sdk_event() for _ in range(20)]

    response = post_events(api_client, sdk_key, events, gzipped=True)

    assert response.json() == {"accepted": 20, "rejected": 0, "errors": []}
    assert SdkEvent.objects.count() == 20


def test_concatenated_gzip_members_are_one_body(api_client, sdk_key):
    body = json.dumps({"events": [sdk_event()]}).encode()
    half = len(body) // 2
    data = gzip.compress(body[:half]) + gzip.compress(body[half:])

    response = post_raw(api_client, EVENTS_URL, data, key=sdk_key, **{"Content-Encoding": "gzip"})

    assert response.json()["accepted"] == 1


def test_gzip_bomb_is_refused_with_413(api_client, sdk_key):
    # 64 MiB of zeros compresses to ~64 KiB: the body is small, the decompressed size is not
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = compressor.compress(b'{"events": [' + b" " * (64 * 1024 * 1024)) + compressor.flush()
    assert len(bomb) < 100 * 1024

    response = post_raw(api_client, EVENTS_URL, bomb, key=sdk_key, **{"Content-Encoding": "gzip"})

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert SdkEvent.objects.count() == 0


def test_gzip_just_over_the_limit_is_413_and_just_under_is_read(api_client, sdk_key, settings):
    settings.INGEST_SDK_MAX_BODY_BYTES = 4096
    body = json.dumps({"events": [sdk_event()]}).encode()
    under = body[:-1] + b" " * (4096 - len(body)) + b"}"
    over = body[:-1] + b" " * (4097 - len(body)) + b"}"

    ok = post_raw(api_client, EVENTS_URL, gzip.compress(under), key=sdk_key, **{"Content-Encoding": "gzip"})
    too_big = post_raw(api_client, EVENTS_URL, gzip.compress(over), key=sdk_key, **{"Content-Encoding": "gzip"})

    assert ok.status_code == 200
    assert too_big.status_code == 413


@pytest.mark.parametrize(
    "data",
    [b"not gzip at all", gzip.compress(b'{"events": []}')[:-6], gzip.compress(b"") * 65 + gzip.compress(b"{}")],
    ids=["garbage", "cut", "too-many-members"],
)
def test_broken_gzip_is_400(api_client, sdk_key, data):
    response = post_raw(api_client, EVENTS_URL, data, key=sdk_key, **{"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert response.json()["message"] == "The body is not valid gzip."


def test_unsupported_content_encoding_is_415(api_client, sdk_key):
    response = post_raw(api_client, EVENTS_URL, b"{}", key=sdk_key, **{"Content-Encoding": "br"})

    assert response.status_code == 415


def test_more_than_500_events_is_413(api_client, sdk_key):
    events = [sdk_event() for _ in range(501)]

    response = post_events(api_client, sdk_key, events)

    assert response.status_code == 413
    assert "500" in response.json()["message"]
    assert SdkEvent.objects.count() == 0


def test_exactly_500_events_are_accepted(api_client, sdk_key):
    response = post_events(api_client, sdk_key, [sdk_event() for _ in range(500)])

    assert response.json()["accepted"] == 500


def test_body_over_one_mib_is_413(api_client, sdk_key):
    event = sdk_event(properties={"blob": "x" * (1024 * 1024)})

    response = post_events(api_client, sdk_key, [event])

    assert response.status_code == 413
    assert SdkEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'"events"', b"{}", b'{"events": null}', b'{"events": {}}', b'{"events": "x"}', b""],
    ids=["garbage", "array", "string", "no-events", "null", "object", "string-events", "empty"],
)
def test_unusable_envelope_is_400(api_client, sdk_key, body):
    response = post_raw(api_client, EVENTS_URL, body, key=sdk_key)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_deeply_nested_body_is_400_not_500(api_client, sdk_key):
    body = b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"

    response = post_raw(api_client, EVENTS_URL, body, key=sdk_key)

    assert response.status_code == 400


def test_empty_batch_is_accepted_as_nothing(api_client, sdk_key):
    assert post_events(api_client, sdk_key, []).json() == {"accepted": 0, "rejected": 0, "errors": []}


def test_missing_or_unknown_key_is_401(api_client, application):
    assert post_events(api_client, None, [sdk_event()]).status_code == 401
    response = post_events(api_client, "sdk_not-a-real-key", [sdk_event()])
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert SdkEvent.objects.count() == 0


def test_revoked_key_is_401(api_client, application):
    key = SdkKeyFactory(application=application)
    sdk_key_revoke(key=key)

    assert post_events(api_client, key.raw_key, [sdk_event()]).status_code == 401


def test_inactive_app_is_401(api_client, application, sdk_key):
    application.is_active = False
    application.save()

    assert post_events(api_client, sdk_key, [sdk_event()]).status_code == 401


def test_wrong_method_and_content_type(api_client, sdk_key):
    assert api_client.get(EVENTS_URL, headers={"x-api-key": sdk_key}).status_code == 405
    response = post_raw(api_client, EVENTS_URL, b"{}", key=sdk_key, content_type="text/plain")
    assert response.status_code == 415


def test_rate_limited_app_gets_429_with_retry_after(api_client, sdk_key, settings):
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 1

    first = post_events(api_client, sdk_key, [sdk_event()])
    second = post_events(api_client, sdk_key, [sdk_event()])

    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second["Retry-After"]) >= 1
    assert SdkEvent.objects.count() == 1


def test_a_batch_costs_one_query_once_credentials_are_cached(api_client, sdk_key, django_assert_num_queries):
    post_events(api_client, sdk_key, [sdk_event()])  # warms the credential cache and last_used_at
    events = [sdk_event() for _ in range(20)]
    events[3]["event_name"] = "onboarding_flow_started"

    with django_assert_num_queries(1):
        response = post_events(api_client, sdk_key, events)

    assert response.json()["accepted"] == 20


def test_stored_batch_wakes_the_outbox_after_commit_and_a_retry_does_not(
    api_client, sdk_key, django_capture_on_commit_callbacks
):
    event = sdk_event()
    with django_capture_on_commit_callbacks() as callbacks:
        post_events(api_client, sdk_key, [event])
    with django_capture_on_commit_callbacks() as retry_callbacks:
        post_events(api_client, sdk_key, [event])

    assert len(callbacks) == 1
    assert retry_callbacks == []
