"""The direct path (ingest/api/direct.py) answers every ingest POST exactly as Django's stack does.

Production serves POSTs to the three ingest endpoints without Django's request cycle; the rest of
the suite mostly talks to the views through Django's test client. So here the same requests go
through both WSGI applications, built the way `saastracker.wsgi` builds them, and the answers
(status, headers, body) must be the same, for valid requests and for every kind of refusal.
Generated event ids and request ids are the only parts allowed to differ.
"""

import gzip
import io
import json
import uuid
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingest.api.direct import direct_app
from ingest.models import Event, SdkEvent
from saastracker.wsgi import IngestWSGIHandler

from .sdk_helpers import EVENTS_URL, IDENTIFY_URL, sdk_event
from .v1_helpers import URL, event_body, sign

# The handlers close connections after each request, as in production: no test-case transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def call(app, path: str, body: bytes, headers: dict, *, method: str = "POST") -> dict:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(headers)
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = status
        answer["headers"] = dict(response_headers)

    chunks = app(environ, start_response)
    try:
        answer["body"] = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return answer


def comparable(answer: dict) -> dict:
    """The answer without what is generated per request (the event id, a fresh request id)."""
    headers = dict(answer["headers"])
    if "X-Request-ID" in headers:
        headers["X-Request-ID"] = "<id>"
    try:
        body = json.loads(answer["body"])
    except ValueError:
        body = answer["body"]
    if isinstance(body, dict) and "event_id" in body:
        body["event_id"] = "<generated>"
    return {"status": answer["status"], "headers": headers, "body": body}


@pytest.fixture
def both():
    """(direct, django): built after the test's settings, as the server builds them at start."""
    return direct_app(IngestWSGIHandler()), IngestWSGIHandler()


def v1_headers(application, secret: str, body: bytes, **extra) -> dict:
    return {
        "CONTENT_TYPE": "application/json",
        "HTTP_X_APP_UUID": str(application.uuid),
        "HTTP_X_SIGNATURE": sign(secret, body),
        **extra,
    }


def assert_same(both, path: str, body: bytes, headers: dict) -> dict:
    direct, django = both
    first = call(direct, path, body, headers)
    second = call(django, path, body, headers)
    assert comparable(first) == comparable(second)
    return first


def test_a_stored_event_gets_the_same_answer_and_is_stored_by_the_direct_path(both, application, api_secret):
    body = event_body()

    answer = assert_same(both, URL, body, v1_headers(application, api_secret, body, HTTP_X_REQUEST_ID="req-1"))

    assert answer["status"] == "202 Accepted"
    assert answer["headers"]["X-Request-ID"] == "req-1"
    assert answer["headers"]["Allow"] == "POST"
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"
    assert Event.objects.filter(event_id=json.loads(answer["body"])["event_id"]).exists()
    assert Event.objects.count() == 2  # one per path


@pytest.mark.parametrize(
    "case",
    [
        "invalid_json",
        "invalid_fields",
        "bad_signature",
        "unknown_app",
        "not_a_uuid",
        "wrong_content_type",
        "too_large",
        "content_length_not_a_number",
        "bad_idempotency_key",
    ],
)
def test_every_refusal_of_v1_is_the_same(both, application, api_secret, case, settings):
    body = event_body()
    headers = v1_headers(application, api_secret, body)
    if case == "invalid_json":
        body = b'{"event": '
        headers = v1_headers(application, api_secret, body)
    elif case == "invalid_fields":
        body = event_body(user_hash="short", path="no-slash", event=...)
        headers = v1_headers(application, api_secret, body)
    elif case == "bad_signature":
        headers["HTTP_X_SIGNATURE"] = "0" * 64
    elif case == "unknown_app":
        headers["HTTP_X_APP_UUID"] = str(uuid.uuid4())
    elif case == "not_a_uuid":
        headers["HTTP_X_APP_UUID"] = "nope"
    elif case == "wrong_content_type":
        headers["CONTENT_TYPE"] = "text/plain"
    elif case == "too_large":
        body = event_body(properties={"blob": "x" * settings.INGEST_V1_MAX_BODY_BYTES})
        headers = v1_headers(application, api_secret, body)
    elif case == "content_length_not_a_number":
        headers["CONTENT_LENGTH"] = "ten"
    elif case == "bad_idempotency_key":
        headers["HTTP_IDEMPOTENCY_KEY"] = "é" * 3

    answer = assert_same(both, URL, body, headers)

    assert answer["status"][0] == "4"
    assert Event.objects.count() == 0


def test_an_idempotent_replay_is_answered_the_same(both, application, api_secret):
    direct, django = both
    body = event_body()
    for app in (direct, django):
        headers = v1_headers(application, api_secret, body, HTTP_IDEMPOTENCY_KEY=f"key-{id(app)}")
        first, again = call(app, URL, body, headers), call(app, URL, body, headers)
        assert again["headers"]["Idempotent-Replayed"] == "true"
        assert json.loads(again["body"]) == json.loads(first["body"])
    assert Event.objects.count() == 2


def test_a_throttled_request_is_answered_the_same(both, application, api_secret, settings):
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 1
    direct, django = both
    body = event_body()
    headers = v1_headers(application, api_secret, body)
    assert call(direct, URL, body, headers)["status"] == "202 Accepted"  # the one token

    answers = [comparable(call(app, URL, body, headers)) for app in (direct, django)]

    assert answers[0] == answers[1]
    assert answers[0]["status"] == "429 Too Many Requests"
    assert int(answers[0]["headers"]["Retry-After"]) >= 1


def test_https_behind_the_trusted_proxy_gets_hsts_on_both_paths(application, api_secret, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    both = direct_app(IngestWSGIHandler()), IngestWSGIHandler()
    body = event_body()

    answer = assert_same(both, URL, body, v1_headers(application, api_secret, body, HTTP_X_FORWARDED_PROTO="https"))

    assert answer["headers"]["Strict-Transport-Security"] == "max-age=3600"


def test_plain_http_is_redirected_by_django_when_production_asks_for_https(application, api_secret, settings):
    settings.SECURE_SSL_REDIRECT = True
    both = direct_app(IngestWSGIHandler()), IngestWSGIHandler()
    body = event_body()

    answer = assert_same(both, URL, body, v1_headers(application, api_secret, body))

    assert answer["status"] == "301 Moved Permanently"
    assert answer["headers"]["Location"].startswith("https://")
    assert Event.objects.count() == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "OPTIONS"])
def test_other_methods_go_to_django(both, application, method):
    direct, django = both

    answers = [comparable(call(app, URL, b"", {}, method=method)) for app in (direct, django)]

    assert answers[0] == answers[1]
    assert answers[0]["status"] == "405 Method Not Allowed"


def sdk_headers(sdk_key: str, **extra) -> dict:
    return {"CONTENT_TYPE": "application/json", "HTTP_X_API_KEY": sdk_key, **extra}


def test_an_sdk_batch_with_a_bad_event_is_answered_the_same(both, sdk_key):
    events = [sdk_event(), sdk_event(event_name=""), sdk_event()]
    body = json.dumps({"sent_at_ms": 1708344000999, "events": events}).encode()

    answer = assert_same(both, EVENTS_URL, body, sdk_headers(sdk_key))

    assert answer["status"] == "200 OK"
    assert json.loads(answer["body"])["accepted"] == 2
    assert json.loads(answer["body"])["errors"][0]["index"] == 1
    assert SdkEvent.objects.count() == 2  # the same event ids twice: stored once


@pytest.mark.parametrize("case", ["gzip", "bad_gzip", "deflate", "bad_key", "not_an_object", "wrong_content_type"])
def test_sdk_encodings_and_refusals_are_the_same(both, sdk_key, case):
    body = json.dumps({"events": [sdk_event()]}).encode()
    headers = sdk_headers(sdk_key)
    if case == "gzip":
        body, headers["HTTP_CONTENT_ENCODING"] = gzip.compress(body), "gzip"
    elif case == "bad_gzip":
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    elif case == "deflate":
        headers["HTTP_CONTENT_ENCODING"] = "deflate"
    elif case == "bad_key":
        headers["HTTP_X_API_KEY"] = "stk_nope"
    elif case == "not_an_object":
        body = b"[1, 2]"
    elif case == "wrong_content_type":
        headers["CONTENT_TYPE"] = "application/x-www-form-urlencoded"

    answer = assert_same(both, EVENTS_URL, body, headers)

    assert answer["status"].startswith("200" if case == "gzip" else "4")


def test_identify_is_answered_the_same(both, sdk_key):
    direct, django = both
    body = json.dumps({"anon_id": str(uuid.uuid4()), "user_id": "user-1"}).encode()

    first = call(direct, IDENTIFY_URL, body, sdk_headers(sdk_key))
    repeated = [comparable(call(app, IDENTIFY_URL, body, sdk_headers(sdk_key))) for app in (direct, django)]

    assert json.loads(first["body"]) == {"status": "ok", "created": True}
    assert repeated[0] == repeated[1]
    assert repeated[0]["body"] == {"status": "ok", "created": False}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@hypothesis_settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    fields=st.dictionaries(
        st.sampled_from(["event", "user_hash", "customer_org_id", "path", "ts_epoch", "properties", "plan", "junk"]),
        _JSON,
        max_size=5,
    )
)
def test_any_v1_body_is_answered_the_same(both, application, api_secret, fields, settings):
    settings.RATE_LIMIT_PER_SECOND = settings.RATE_LIMIT_BURST = 10**6
    body = event_body(**fields)

    assert_same(both, URL, body, v1_headers(application, api_secret, body))


@hypothesis_settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(event=st.dictionaries(st.sampled_from(["event_name", "ts_ms", "user", "properties", "schema_version"]), _JSON))
def test_any_sdk_event_is_answered_the_same(both, sdk_key, event, settings):
    settings.RATE_LIMIT_PER_SECOND = settings.RATE_LIMIT_BURST = 10**6
    body = json.dumps({"events": [sdk_event(**event)]}).encode()

    assert_same(both, EVENTS_URL, body, sdk_headers(sdk_key))
