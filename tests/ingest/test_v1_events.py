"""POST /v1/events: the signed single-event API, end to end through real PostgreSQL and Redis."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from analytics.fold import fold_drain
from apps_registry.models import ApiSecret, Usage
from apps_registry.services import api_secret_revoke, api_secret_rotate
from ingest.models import Event, ExportState, IdempotencyKey
from ingest.services.v1_events import session_infer
from tests.factories import ApiSecretFactory, ApplicationFactory, CompanyFactory

from .v1_helpers import URL, USER_HASH, event_body, send, sign

pytestmark = pytest.mark.django_db


def error_fields(response) -> dict[str, str]:
    return {d["field"]: d["message"] for d in response.json()["details"]}


# --- 202 --------------------------------------------------------------------------------------


def test_valid_event_is_stored_with_every_field(client, application, api_secret):
    # Given a signed event with every optional field
    session = uuid.uuid4()
    body = event_body(
        event="feature_used",
        path="/reports",
        session_id=str(session),
        plan="growth",
        environment="production",
        ts_epoch=1_700_000_000,
        properties={"feature": "export", "n": 3, "nested": {"ok": True}},
    )

    # When it is sent
    before = timezone.now()
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    # Then it is accepted with the server-assigned id, and stored with the app's scope
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "accepted"
    row = Event.objects.get()
    assert str(row.event_id) == answer["event_id"]
    assert (row.company_id, row.application_id) == (application.company_id, application.id)
    assert (row.event, row.user_hash, row.customer_org_id, row.path) == ("feature_used", USER_HASH, "org_1", "/reports")
    assert (row.session_id, row.session_inferred) == (session, False)
    assert (row.plan, row.environment) == ("growth", "production")
    assert row.occurred_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert before <= row.received_at <= timezone.now()
    assert row.properties == {"feature": "export", "n": 3, "nested": {"ok": True}}
    assert row.export_state == ExportState.PENDING
    assert row.webhook_pending is False


def test_minimal_event_uses_receive_time_and_infers_the_session(client, application, api_secret):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(path=..., properties=...))

    assert response.status_code == 202
    row = Event.objects.get()
    assert row.occurred_at == row.received_at
    assert (row.path, row.plan, row.environment, row.properties) == (None, None, None, None)
    assert row.session_inferred is True
    assert row.session_id == session_infer(
        app_uuid=application.uuid, customer_org_id="org_1", user_hash=USER_HASH, at=row.occurred_at.timestamp()
    )


def test_inferred_session_is_shared_within_thirty_minutes_and_split_across_buckets(client, application, api_secret):
    # Given events of one user at 00:00, 00:29:59 and 00:30 of a day, and another user's at 00:00
    start = 1_700_006_400  # a multiple of 1800
    times = [start, start + 1799, start + 1800]
    for ts in times:
        send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(ts_epoch=ts))
    send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(ts_epoch=start, user_hash="b" * 64))

    # Then the first two share a session; the next bucket and the other user get their own
    sessions = dict(Event.objects.values_list("occurred_at", "session_id").filter(user_hash=USER_HASH))
    first, same, later = (sessions[datetime.fromtimestamp(ts, tz=UTC)] for ts in times)
    other = Event.objects.get(user_hash="b" * 64).session_id
    assert first == same
    assert len({first, later, other}) == 3


def test_webhook_trigger_events_are_marked_for_webhooks(client, application, api_secret):
    response = send(
        client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="onboarding_flow_completed")
    )

    assert response.status_code == 202
    assert Event.objects.get().webhook_pending is True


def test_extra_fields_are_ignored_and_numeric_org_ids_become_strings(client, application, api_secret):
    body = event_body(customer_org_id=4217, unknown="x", another={"deep": [1, 2]})

    response = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    assert response.status_code == 202
    assert Event.objects.get().customer_org_id == "4217"


def test_charset_parameter_on_the_content_type_is_accepted(client, application, api_secret):
    response = send(
        client,
        app_uuid=application.uuid,
        secret=api_secret,
        body=event_body(),
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 202


def test_hot_path_is_one_query_once_credentials_are_cached(client, application, api_secret, django_assert_num_queries):
    # Given the app's credentials already cached by an earlier request
    send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())

    # When another event is sent, it costs exactly one statement (the INSERT)
    with django_assert_num_queries(1):
        response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="second"))

    assert response.status_code == 202
    assert Event.objects.count() == 2


# --- 400: field rules, at and just past each limit ------------------------------------------

NOW = int(time.time())
YEAR_AHEAD = NOW + 365 * 24 * 3600

VALID_VALUES = [
    ("event", "e"),
    ("event", "e" * 255),
    ("user_hash", "f" * 64),
    ("customer_org_id", "o"),
    ("customer_org_id", "o" * 255),
    ("customer_org_id", 0),
    ("customer_org_id", 12.5),
    ("path", "/"),
    ("path", "/" + "p" * 2047),
    ("session_id", str(uuid.uuid4())),
    ("plan", ""),
    ("plan", "p" * 255),
    ("environment", "e" * 32),
    ("ts_epoch", 0),
    ("ts_epoch", YEAR_AHEAD),
    ("properties", {}),
    ("properties", {"a": [1, "b", None, {"c": 1.5}]}),
    ("path", None),
    ("properties", None),
]


@pytest.mark.parametrize(("field", "value"), VALID_VALUES)
def test_values_at_the_limits_are_accepted(client, application, api_secret, field, value):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(**{field: value}))

    assert response.status_code == 202, response.json()
    assert Event.objects.count() == 1


INVALID_VALUES = [
    ("event", "", "must not be empty"),
    ("event", "e" * 256, "must be at most 255 characters"),
    ("event", 5, "must be a string"),
    ("event", ..., "is required"),
    ("event", None, "is required"),
    ("user_hash", "f" * 63, "must be exactly 64 characters"),
    ("user_hash", "f" * 65, "must be exactly 64 characters"),
    ("user_hash", ..., "is required"),
    ("customer_org_id", "", "must not be empty"),
    ("customer_org_id", "o" * 256, "must be at most 255 characters"),
    ("customer_org_id", True, "must be a string"),
    ("customer_org_id", {"id": 1}, "must be a string"),
    ("customer_org_id", ..., "is required"),
    ("path", "dashboard", "must start with /"),
    ("path", "", "must start with /"),
    ("path", "/" + "p" * 2048, "must be at most 2048 characters"),
    ("path", 7, "must be a string"),
    ("session_id", "not-a-uuid", "must be a UUID string"),
    ("session_id", 12345, "must be a UUID string"),
    ("plan", "p" * 256, "must be at most 255 characters"),
    ("plan", ["growth"], "must be a string"),
    ("environment", "e" * 33, "must be at most 32 characters"),
    ("ts_epoch", -1, "must not be negative"),
    ("ts_epoch", NOW + 367 * 24 * 3600, "must not be more than a year in the future"),
    ("ts_epoch", 1_700_000_000.5, "must be an integer (Unix seconds)"),
    ("ts_epoch", "1700000000", "must be an integer (Unix seconds)"),
    ("ts_epoch", True, "must be an integer (Unix seconds)"),
    ("properties", [1, 2], "must be an object"),
    ("properties", "x", "must be an object"),
    ("event", "a\u0000b", "must not contain NUL characters"),
]


@pytest.mark.parametrize(("field", "value", "message"), INVALID_VALUES)
def test_each_field_rule_is_enforced(client, application, api_secret, field, value, message):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(**{field: value}))

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert error_fields(response) == {field: message}
    assert not Event.objects.exists()


def test_every_offending_field_is_reported_at_once(client, application, api_secret):
    body = json.dumps({"event": "", "user_hash": "short", "path": "x", "ts_epoch": -5, "properties": []}).encode()

    response = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    assert response.status_code == 400
    assert error_fields(response) == {
        "event": "must not be empty",
        "user_hash": "must be exactly 64 characters",
        "customer_org_id": "is required",
        "path": "must start with /",
        "ts_epoch": "must not be negative",
        "properties": "must be an object",
    }


# --- 400: the bytes -----------------------------------------------------------------------------

BAD_BODIES = [
    (b'{"event":"x","user_hash":"' + b"a" * 64 + b'","customer_org_id":"o",}', "invalid_json"),
    (b'{"event":"x","ts_epoch":NaN}', "invalid_json"),
    (b'{"event":"x","ts_epoch":Infinity}', "invalid_json"),
    (b'{"event":"x","ts_epoch":-Infinity}', "invalid_json"),
    (b'{"event":"x"', "invalid_json"),
    (b"", "invalid_json"),
    (b'{"event":"caf\xe9"}', "invalid_utf8"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"[" + event_body() + b"]", "not_an_object"),
    (b'"page_view"', "not_an_object"),
    (b"42", "not_an_object"),
    (b"null", "not_an_object"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
def test_bodies_that_are_not_one_utf8_json_object_are_rejected(client, application, api_secret, body, code):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    assert response.status_code == 400
    assert response.json()["error"] == code
    assert not Event.objects.exists()


def test_arrays_are_rejected_with_a_message_that_says_batches_are_not_supported(client, application, api_secret):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=b"[" + event_body() + b"]")

    assert response.status_code == 400
    assert "arrays" in response.json()["message"]


# --- 401 / 404: who is sending --------------------------------------------------------------


def test_missing_signature_is_401(client, application, api_secret):
    response = send(client, app_uuid=application.uuid, secret=None, body=event_body())

    assert response.status_code == 401
    assert response.json()["error"] == "Invalid signature"
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "signature",
    ["0" * 64, "deadbeef", "", "z" * 64, "é" * 64],
    ids=["wrong", "short", "empty", "not-hex", "non-ascii"],
)
def test_wrong_signature_is_401(client, application, api_secret, signature):
    response = send(client, app_uuid=application.uuid, secret=None, body=event_body(), signature=signature)

    assert response.status_code == 401
    assert not Event.objects.exists()


def test_uppercase_hex_signature_is_401(client, application, api_secret):
    body = event_body()

    response = send(client, app_uuid=application.uuid, secret=None, body=body, signature=sign(api_secret, body).upper())

    assert response.status_code == 401


def test_reserialized_body_fails_the_signature(client, application, api_secret):
    # Given a signature over the compact body
    compact = event_body()
    signature = sign(api_secret, compact)

    # When the same JSON is sent with other whitespace
    pretty = json.dumps(json.loads(compact), indent=2).encode()
    response = send(client, app_uuid=application.uuid, secret=None, body=pretty, signature=signature)

    # Then the signature does not match
    assert response.status_code == 401
    assert not Event.objects.exists()


def test_signature_is_checked_before_the_body_is_parsed(client, application, api_secret):
    garbage = b"{not json,,"

    unsigned = send(client, app_uuid=application.uuid, secret=None, body=garbage, signature="0" * 64)
    signed = send(client, app_uuid=application.uuid, secret=api_secret, body=garbage)

    assert unsigned.status_code == 401
    assert signed.status_code == 400


def test_a_secret_of_another_app_is_401(client, application, api_secret):
    other_secret = ApiSecretFactory(application=ApplicationFactory(company=application.company)).secret

    response = send(client, app_uuid=application.uuid, secret=other_secret, body=event_body())

    assert response.status_code == 401


def test_credentials_only_write_their_own_apps_events(client, application, api_secret):
    # Given another app in another company
    other = ApplicationFactory()
    other_secret = ApiSecretFactory(application=other).secret

    # When each sends one event
    send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="mine"))
    send(client, app_uuid=other.uuid, secret=other_secret, body=event_body(event="theirs"))

    # Then each event belongs to its sender's app and company only
    mine, theirs = Event.objects.get(event="mine"), Event.objects.get(event="theirs")
    assert (mine.application_id, mine.company_id) == (application.id, application.company_id)
    assert (theirs.application_id, theirs.company_id) == (other.id, other.company_id)


@pytest.mark.parametrize(
    "app_uuid", [uuid.uuid4(), "not-a-uuid", "", "1234"], ids=["unknown", "garbage", "empty", "short"]
)
def test_unknown_or_unparseable_app_uuid_is_404(client, application, api_secret, app_uuid):
    response = send(client, app_uuid=app_uuid, secret=api_secret, body=event_body())

    assert response.status_code == 404
    assert response.json()["error"] == "Unknown app_uuid"


def test_missing_app_uuid_header_is_404(client, application, api_secret):
    body = event_body()

    response = client.generic(
        "POST", URL, data=body, content_type="application/json", HTTP_X_SIGNATURE=sign(api_secret, body)
    )

    assert response.status_code == 404


def test_inactive_app_is_404(client, application, api_secret):
    application.is_active = False
    application.save()

    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())

    assert response.status_code == 404
    assert response.json()["error"] == "Unknown app_uuid"


def test_inactive_company_is_404(client, application, api_secret):
    application.company.is_active = False
    application.company.save()

    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())

    assert response.status_code == 404


def test_unknown_app_is_404_even_with_a_bad_body(client):
    response = send(client, app_uuid=uuid.uuid4(), secret="whatever", body=b"{nope")

    assert response.status_code == 404


# --- secret rotation --------------------------------------------------------------------------


def test_rotation_keeps_the_old_secret_working_until_it_expires(client, application, api_secret):
    # Given a rotated secret
    new_secret = api_secret_rotate(application=application, expire_old_in=timedelta(hours=24))

    # Then both the old and the new secret are accepted
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="old")).status_code == 202
    assert send(client, app_uuid=application.uuid, secret=new_secret, body=event_body(event="new")).status_code == 202

    # When the old one's grace period is over
    old = ApiSecret.objects.get(application=application, hint=api_secret[-4:])
    old.expires_at = timezone.now() - timedelta(seconds=1)
    old.save()

    # Then only the new one works
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 401
    assert send(client, app_uuid=application.uuid, secret=new_secret, body=event_body()).status_code == 202


def test_a_revoked_secret_stops_working_at_once(client, application, api_secret):
    new_secret = api_secret_rotate(application=application)
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202

    api_secret_revoke(secret=ApiSecret.objects.get(application=application, hint=api_secret[-4:]))

    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 401
    assert send(client, app_uuid=application.uuid, secret=new_secret, body=event_body()).status_code == 202


# --- 405 / 413 / 415: the request's shape, answered before authentication --------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_are_405(client, method):
    response = client.generic(method, URL)

    assert response.status_code == 405


def test_body_over_the_limit_is_413_even_before_authentication(client, application, api_secret, settings):
    body = event_body(properties={"blob": "x" * (64 * 1024)})

    unsigned = send(client, app_uuid=uuid.uuid4(), secret=None, body=body)
    signed = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    assert unsigned.status_code == 413
    assert signed.status_code == 413
    assert not Event.objects.exists()


def test_body_exactly_at_the_limit_is_not_413(client, application, api_secret):
    base = event_body(properties={"blob": ""})
    body = event_body(properties={"blob": "x" * (64 * 1024 - len(base))})
    assert len(body) == 64 * 1024

    response = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    assert response.status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_wrong_content_type_is_415(client, application, api_secret, content_type):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), content_type=content_type)

    assert response.status_code == 415
    assert not Event.objects.exists()


# --- 429 ----------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(client, application, api_secret, settings):
    # Given an app limited to a burst of two and one request per second
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 2

    # When it sends three events at once
    answers = [
        send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event=f"e{i}")) for i in range(3)
    ]

    # Then the third is refused with a hint when to retry, and only two are stored
    assert [r.status_code for r in answers] == [202, 202, 429]
    assert answers[2].json()["error"] == "rate_limited"
    assert int(answers[2]["Retry-After"]) >= 1
    assert Event.objects.count() == 2


def test_rate_limit_is_per_application(client, application, api_secret, settings):
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 1
    other = ApplicationFactory()
    other_secret = ApiSecretFactory(application=other).secret

    first = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())
    limited = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())
    other_app = send(client, app_uuid=other.uuid, secret=other_secret, body=event_body())

    assert (first.status_code, limited.status_code, other_app.status_code) == (202, 429, 202)


# --- idempotency ------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_original_answer_and_stores_nothing(
    client, application, api_secret, django_assert_num_queries
):
    # Given a first request with a key (credentials cached by it)
    first = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="req-1")

    # When the client retries with the same key (after a timeout, say), even with another body
    with django_assert_num_queries(2):
        retry = send(
            client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="x"), idempotency_key="req-1"
        )

    # Then the answer is the original one and only one event exists
    assert first.status_code == retry.status_code == 202
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 1
    assert Event.objects.get().event == "page_view"


def test_a_new_idempotency_key_costs_one_query(client, application, api_secret, django_assert_num_queries):
    send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())

    with django_assert_num_queries(1):
        response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="k")

    assert response.status_code == 202
    assert IdempotencyKey.objects.get().event_id == uuid.UUID(response.json()["event_id"])


def test_different_keys_and_different_apps_do_not_collide(client, application, api_secret):
    other = ApplicationFactory(company=application.company)
    other_secret = ApiSecretFactory(application=other).secret

    a = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="a")
    b = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="b")
    c = send(client, app_uuid=other.uuid, secret=other_secret, body=event_body(), idempotency_key="a")

    assert len({a.json()["event_id"], b.json()["event_id"], c.json()["event_id"]}) == 3
    assert Event.objects.count() == 3


def test_an_idempotency_key_older_than_a_day_is_a_new_request(client, application, api_secret):
    first = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="old")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    again = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="old")

    assert again.status_code == 202
    assert again.json()["event_id"] != first.json()["event_id"]
    assert "Idempotent-Replayed" not in again
    assert Event.objects.count() == 2
    assert IdempotencyKey.objects.get().event_id == uuid.UUID(again.json()["event_id"])


def test_an_idempotency_key_just_under_a_day_old_still_replays(client, application, api_secret):
    first = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="k")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))

    again = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="k")

    assert again.json()["event_id"] == first.json()["event_id"]
    assert Event.objects.count() == 1


def test_an_invalid_event_does_not_use_up_its_idempotency_key(client, application, api_secret):
    bad = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event=""), idempotency_key="k")
    good = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="k")

    assert (bad.status_code, good.status_code) == (400, 202)
    assert "Idempotent-Replayed" not in good
    assert Event.objects.count() == 1


@pytest.mark.parametrize("key", ["k" * 256, "", "tab\there", "ключ"], ids=["too-long", "empty", "control", "non-ascii"])
def test_an_invalid_idempotency_key_is_400(client, application, api_secret, key):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key=key)

    assert response.status_code == 400
    assert error_fields(response) == {"Idempotency-Key": "must be 1-255 printable ASCII characters"}
    assert not Event.objects.exists()


def test_an_idempotency_key_of_255_characters_is_accepted(client, application, api_secret):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(), idempotency_key="k" * 255)

    assert response.status_code == 202


# --- plan limits never block ingest -----------------------------------------------------------


def test_overage_is_flagged_once_and_ingest_keeps_accepting(client, api_secret, application):
    # Given a company whose plan allows three events a month
    company = application.company
    company.events_per_month_override = 3
    company.save()

    # When it sends five, all are accepted and stored
    answers = [
        send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event=f"e{i}")).status_code
        for i in range(5)
    ]
    assert answers == [202] * 5

    # And the fold counts them (usage is counted as events are folded): the overage is flagged
    fold_drain()
    usage = Usage.objects.get(company=company)
    assert usage.event_count == 5
    assert usage.overage_at is not None
    flagged_at = usage.overage_at

    # When more events arrive and the count runs again, ingest still accepts and the flag is not set again
    later = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="late"))
    fold_drain()
    usage.refresh_from_db()
    assert later.status_code == 202
    assert usage.event_count == 6
    assert usage.overage_at == flagged_at


def test_under_the_limit_no_overage_is_flagged(client, api_secret, application):
    send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())

    fold_drain()

    assert Usage.objects.get(company=application.company).overage_at is None


def test_ingest_does_not_count_usage_on_the_request_path(client, api_secret, application):
    send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())

    assert not Usage.objects.filter(company=application.company).exists()


def test_a_company_with_several_apps_is_counted_as_one(client):
    company = CompanyFactory(events_per_month_override=1)
    apps = [ApplicationFactory(company=company) for _ in range(2)]
    secrets = [ApiSecretFactory(application=app).secret for app in apps]

    for app, secret in zip(apps, secrets, strict=True):
        assert send(client, app_uuid=app.uuid, secret=secret, body=event_body()).status_code == 202
    fold_drain()

    usage = Usage.objects.get(company=company)
    assert usage.event_count == 2
    assert usage.overage_at is not None
