"""`properties` limits and unreadable values, the same on `/v1/events` and the SDK API: a 400 (or a
rejected event in a batch) that names the field, never a 500 and never a stored value that later
fails its export.

Bodies are written as raw JSON text, because the nastiness (`\\ud800`, 1e400, 2^64, invalid UTF-8)
is exactly what a JSON library refuses to produce.
"""

import gzip
import json

import pytest

from ingest.models import Event, IdentifyLink, SdkEvent
from ingest.schemas.json_values import MAX_DEPTH, MAX_KEY_LENGTH

from .sdk_helpers import EVENTS_URL, IDENTIFY_URL, post_raw, sdk_event
from .v1_helpers import event_body, send

pytestmark = pytest.mark.django_db

ANON_ID = "550e8400-e29b-41d4-a716-446655440000"


def nested(levels: int, leaf: str = "1") -> str:
    """`levels` objects nested in each other, as JSON text: {"a":{"a":...leaf...}}."""
    return '{"a":' * levels + leaf + "}" * levels


def deep_path(levels: int) -> str:
    return "properties" + ".a" * (levels - 1)


# (raw JSON text of `properties`, the field path named, a piece of the message)
BAD_PROPERTIES = [
    pytest.param(nested(MAX_DEPTH + 1), deep_path(MAX_DEPTH + 1), "deeper than 32", id="depth-33"),
    pytest.param(nested(254), deep_path(MAX_DEPTH + 1), "deeper than 32", id="depth-254"),
    pytest.param(nested(900), deep_path(MAX_DEPTH + 1), "deeper than 32", id="depth-900"),
    pytest.param('{"l":' + "[" * 40 + "]" * 40 + "}", "properties.l" + "[0]" * 31, "deeper", id="deep-arrays"),
    pytest.param('{"n":18446744073709551616}', "properties.n", "integer out of range", id="int-2^64"),
    pytest.param('{"n":-9223372036854775809}', "properties.n", "integer out of range", id="int-below-int64"),
    pytest.param('{"n":1' + "0" * 5000 + "}", "properties.n", "number out of range", id="int-5000-digits"),
    pytest.param('{"n":1e400}', "properties.n", "number out of range", id="float-1e400"),
    pytest.param('{"n":-1e400}', "properties.n", "number out of range", id="float-minus-1e400"),
    pytest.param('{"s":"\\ud800"}', "properties.s", "unpaired surrogates", id="lone-high-surrogate"),
    pytest.param('{"s":["ok","x\\udc00"]}', "properties.s[1]", "unpaired surrogates", id="lone-low-surrogate"),
    pytest.param('{"\\ud800":1}', "properties.\\ud800", "key must be valid Unicode", id="surrogate-key"),
    pytest.param('{"s":"a\\u0000b"}', "properties.s", "NUL", id="nul-string"),
    pytest.param('{"a":{"k\\u0000":1}}', "properties.a.k\\u0000", "key must not contain NUL", id="nul-key"),
    pytest.param(
        json.dumps({"k" * (MAX_KEY_LENGTH + 1): 1}),
        "properties." + "k" * 64 + "…",
        "at most 255 characters",
        id="key-256",
    ),
]

GOOD_PROPERTIES = [
    pytest.param(nested(MAX_DEPTH), id="depth-32"),
    pytest.param('{"n":18446744073709551615,"m":-9223372036854775808}', id="int-64-bit-edges"),
    pytest.param('{"x":1e-400,"y":-0.0,"z":2.5e-3}', id="float-edges"),
    pytest.param(json.dumps({"k" * MAX_KEY_LENGTH: 1}), id="key-255"),
    pytest.param('{"s":"\\ud83d\\ude00 paired surrogates are one character"}', id="paired-surrogates"),
    pytest.param('{"a":1,"a":2}', id="duplicate-keys"),
]


def v1_body(properties: str) -> bytes:
    return event_body()[:-1] + b',"properties":' + properties.encode() + b"}"


def batch_body(*properties: str) -> bytes:
    """A batch with one event per `properties` text (None: the valid default)."""
    events = []
    for text in properties:
        event = json.dumps(sdk_event(properties={"p": 1}))
        events.append(event.replace('{"p": 1}', text) if text is not None else event)
    return ('{"events": [' + ", ".join(events) + "]}").encode()


@pytest.mark.parametrize(("properties", "field", "message"), BAD_PROPERTIES)
def test_v1_names_the_properties_field_beyond_the_limits(client, application, api_secret, properties, field, message):
    response = send(client, app_uuid=application.uuid, secret=api_secret, body=v1_body(properties))

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    details = response.json()["details"]
    assert [d["field"] for d in details] == [field]
    assert message in details[0]["message"]
    assert not Event.objects.exists()


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("properties", "field", "message"), BAD_PROPERTIES)
def test_sdk_rejects_only_the_event_beyond_the_limits_and_names_the_field(
    api_client, sdk_key, properties, field, message, gzipped
):
    body = batch_body(None, properties, None)
    headers = {"Content-Encoding": "gzip"} if gzipped else {}

    response = post_raw(api_client, EVENTS_URL, gzip.compress(body) if gzipped else body, key=sdk_key, **headers)

    assert response.status_code == 200
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, field)]
    assert message in result["errors"][0]["message"]
    assert SdkEvent.objects.count() == 2


@pytest.mark.parametrize("properties", GOOD_PROPERTIES)
def test_values_within_the_limits_are_stored_as_sent_on_both_apis(
    client, api_client, application, api_secret, sdk_key, properties
):
    expected = json.loads(properties)

    v1 = send(client, app_uuid=application.uuid, secret=api_secret, body=v1_body(properties))
    sdk = post_raw(api_client, EVENTS_URL, batch_body(properties), key=sdk_key)

    assert v1.status_code == 202
    assert sdk.json() == {"accepted": 1, "rejected": 0, "errors": []}
    assert Event.objects.get().properties == expected
    assert SdkEvent.objects.get().properties == expected


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("event", '"\\ud800"', "unpaired surrogates"),
        ("customer_org_id", "1e400", "must be a string"),
        ("ts_epoch", "1e400", "must be an integer"),
        ("customer_org_id", "1" + "0" * 300, "at most 255 characters"),
    ],
)
def test_v1_names_a_top_level_field_no_decoder_can_hold(client, application, api_secret, field, text, message):
    body = event_body(**{field: ...})[:-1] + f',"{field}":{text}}}'.encode()

    response = send(client, app_uuid=application.uuid, secret=api_secret, body=body)

    assert response.status_code == 400
    [detail] = response.json()["details"]
    assert detail["field"] == field
    assert message in detail["message"]


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("event_name", '"\\ud800"', "unpaired surrogates"),
        ("device.bundle_version", "1e400", "finite"),
        ("ts_ms", "1e400", "Unix milliseconds"),
        ("event_name", b'"caf\xe9"', "invalid UTF-8"),
    ],
)
def test_sdk_names_a_field_no_decoder_can_hold_and_keeps_the_rest(api_client, sdk_key, field, text, message):
    marker = "__MARK__"
    event = sdk_event(**{field: marker})
    raw = text if isinstance(text, bytes) else text.encode()
    bad = json.dumps(event).encode().replace(f'"{marker}"'.encode(), raw)
    body = b'{"events": [' + json.dumps(sdk_event()).encode() + b", " + bad + b"]}"

    result = post_raw(api_client, EVENTS_URL, body, key=sdk_key).json()

    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(1, field)]
    assert message in result["errors"][0]["message"]
    assert SdkEvent.objects.count() == 1


def test_sdk_names_an_unreadable_value_outside_the_fields_it_reads(api_client, sdk_key):
    bad = json.dumps(sdk_event())[:-1] + ', "extra": {"k": "\\udfff"}}'
    body = ('{"events": [' + bad + "]}").encode()

    result = post_raw(api_client, EVENTS_URL, body, key=sdk_key).json()

    assert result["rejected"] == 1
    assert [e["field"] for e in result["errors"]] == ["extra.k"]


def test_an_unreadable_event_id_is_echoed_safely(api_client, sdk_key):
    bad = json.dumps(sdk_event(event_id="x"))
    body = ('{"events": [' + bad.replace('"event_id": "x"', '"event_id": "\\ud800"') + "]}").encode()

    response = post_raw(api_client, EVENTS_URL, body, key=sdk_key)

    assert response.status_code == 200
    assert response.json()["errors"][0]["event_id"] == "\\ud800"


@pytest.mark.parametrize(
    ("user_id", "message"),
    [
        (b'"\\ud800"', "unpaired surrogates"),
        (b'"caf\xe9"', "invalid UTF-8"),
        (b"1e400", "must be a string"),
        (b'"a\\u0000b"', "NUL"),
    ],
)
def test_identify_names_a_user_id_no_decoder_can_hold(api_client, sdk_key, user_id, message):
    body = b'{"anon_id": "' + ANON_ID.encode() + b'", "user_id": ' + user_id + b"}"

    response = post_raw(api_client, IDENTIFY_URL, body, key=sdk_key)

    assert response.status_code == 400
    [detail] = response.json()["details"]
    assert detail["field"] == "user_id"
    assert message in detail["message"]
    assert not IdentifyLink.objects.exists()


def test_sdk_events_with_bad_utf8_inside_a_string_are_not_a_500(api_client, sdk_key):
    # msgspec raises UnicodeDecodeError (not a DecodeError) for these bytes: this was a 500.
    body = b'{"events": [{"event_name": "caf\xe9"}]}'

    response = post_raw(api_client, EVENTS_URL, body, key=sdk_key)

    assert response.status_code == 200
    assert response.json()["rejected"] == 1
