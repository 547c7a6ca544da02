"""Property: whatever a client sends to /v1/events, the answer is a documented status, never a 500."""

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.models import Event

from .v1_helpers import URL, event_body, sign

pytestmark = pytest.mark.django_db

DOCUMENTED = {202, 400, 401, 404, 405, 413, 415, 429}

json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
)
field_values = st.one_of(
    json_values,
    st.text(min_size=60, max_size=70),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just("/" + "p" * 2048),
    st.uuids().map(str),
)
FIELDS = [
    "event",
    "user_hash",
    "customer_org_id",
    "path",
    "session_id",
    "plan",
    "environment",
    "ts_epoch",
    "properties",
]
VALID = json.loads(event_body(session_id=str(uuid.uuid4()), plan="p", environment="e", ts_epoch=1, properties={}))
# Mostly-valid events with a few fields replaced, so arbitrary values reach the database, not just the validator.
event_objects = st.builds(
    lambda drop, overrides: {**{k: v for k, v in VALID.items() if k not in drop}, **overrides},
    st.sets(st.sampled_from(FIELDS), max_size=2),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), field_values, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_values, max_size=4).map(lambda p: {"properties": p}),
)


def to_bytes(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    event_objects.map(to_bytes),
    event_objects.map(to_bytes),
    st.binary(max_size=300),
    json_values.map(to_bytes),
    st.builds(lambda base, junk: base + junk, st.just(event_body()), st.binary(max_size=10)),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=80)


def assert_documented(response, method="POST") -> None:
    assert response.status_code in DOCUMENTED, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json") or method == "HEAD"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, idempotency_key=st.none() | header_text)
def test_any_signed_body_gets_a_documented_answer_and_2xx_means_stored(
    client, application, api_secret, body, idempotency_key
):
    # Given a correctly signed request from a known app, whatever its body and idempotency key
    extra = {"CONTENT_TYPE": "application/json", "HTTP_X_APP_UUID": str(application.uuid)}
    extra["HTTP_X_SIGNATURE"] = sign(api_secret, body)
    if idempotency_key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    before = Event.objects.count()

    response = client.generic("POST", URL, data=body, **extra)

    # Then the answer is documented, and an event is stored exactly when a new one was accepted
    assert_documented(response)
    stored = Event.objects.count() - before
    assert stored == (1 if response.status_code == 202 and "Idempotent-Replayed" not in response else 0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["POST", "POST", "GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
    body=bodies,
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""])
    | header_text,
    app_choice=st.sampled_from(["ours", "random", "garbage"]),
    garbage_uuid=header_text,
    signature_choice=st.sampled_from(["right", "wrong", "none"]),
    wrong_signature=header_text,
)
def test_any_request_gets_a_documented_answer(
    client,
    application,
    api_secret,
    method,
    body,
    content_type,
    app_choice,
    garbage_uuid,
    signature_choice,
    wrong_signature,
):
    # Given any method, content type, app uuid and signature
    extra = {"CONTENT_TYPE": content_type}
    extra["HTTP_X_APP_UUID"] = {"ours": str(application.uuid), "random": str(uuid.uuid4()), "garbage": garbage_uuid}[
        app_choice
    ]
    if signature_choice != "none":
        extra["HTTP_X_SIGNATURE"] = sign(api_secret, body) if signature_choice == "right" else wrong_signature

    response = client.generic(method, URL, data=body, **extra)

    # Then the answer is always one of the documented codes
    assert_documented(response, method)
    if response.status_code == 202:
        assert (method, app_choice, signature_choice) == ("POST", "ours", "right")
