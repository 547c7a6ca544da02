"""Property: JSON text no library would write (deep nesting, 2^64 and 1e400, `\\ud800`, NUL, 300-character
keys, duplicate keys, invalid UTF-8, odd header bytes) never gets a 5xx from any ingest endpoint.

The bodies are generated as JSON *text*, token by token, because json.dumps cannot produce most of
this. Each endpoint has its own property: `/v1/events`, the SDK batch (plain and gzip) and identify.
Whatever the answer, it is documented, and what was acknowledged is what was stored.
"""

import gzip
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.models import Event, IdentifyLink, SdkEvent
from ingest.schemas.json_values import MAX_DEPTH

from .sdk_helpers import EVENTS_URL, IDENTIFY_URL, post_raw, sdk_event
from .v1_helpers import URL, event_body, sign

pytestmark = pytest.mark.django_db

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- JSON text, nasty on purpose -------------------------------------------------------------

nasty_numbers = (
    st.sampled_from(
        [
            "18446744073709551615",  # 2^64-1: the largest integer we keep
            "18446744073709551616",  # 2^64
            "-9223372036854775809",  # below int64
            "1" + "0" * 400,
            "1e400",
            "-1e400",
            "1e-400",
            "-0",
            "9007199254740993",  # 2^53+1
            "1.7976931348623157e308",
            "NaN",  # not JSON
            "Infinity",  # not JSON
        ]
    )
    | st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
)

escapes = st.sampled_from(
    ["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u0000", "\\n", '\\"', "\\\\", "\\/", "é", "\\u00e9"]
)
nasty_strings = st.builds(
    lambda parts: '"' + "".join(parts) + '"',
    st.lists(
        escapes | st.text(st.characters(blacklist_characters='"\\', blacklist_categories=["Cs"]), max_size=5),
        max_size=4,
    ),
) | st.sampled_from(['"' + "k" * 300 + '"', '"' + "k" * 255 + '"', '""'])


def nested_text(depth: int, leaf: str, *, arrays: bool) -> str:
    return ("[" * depth + leaf + "]" * depth) if arrays else ('{"d":' * depth + leaf + "}" * depth)


def json_texts() -> st.SearchStrategy[str]:
    leaves = nasty_numbers | nasty_strings | st.sampled_from(["true", "false", "null"])
    deep = st.builds(nested_text, st.sampled_from([31, 32, 33, 100, 254, 255, 1100]), leaves, arrays=st.booleans())
    return st.recursive(
        leaves | deep,
        lambda children: (
            st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
            | st.lists(st.tuples(nasty_strings, children), max_size=4).map(
                lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
            )
        ),
        max_leaves=10,
    )


def depth(value: object) -> int:
    """Levels of objects and arrays in a stored value (iterative: a stored value may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def with_field(base: bytes, name: str, text: str) -> bytes:
    """`base` (a JSON object) with `"name": text` appended: a duplicate when `name` is already there."""
    return base[:-1] + f',"{name}":{text}}}'.encode("utf-8", "surrogatepass")


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


byte_noise = st.sampled_from([b"", b"\xff", b"\xe9", b"\xed\xa0\x80", b"\x00", b" ", b"\xc3"])


# --- /v1/events ---------------------------------------------------------------------------------

V1_FIELDS = ["event", "customer_org_id", "path", "plan", "environment", "ts_epoch", "session_id", "properties", "x"]
v1_bodies = st.one_of(
    st.builds(with_field, st.just(event_body()), st.sampled_from(V1_FIELDS), json_texts()),
    st.builds(
        lambda text, noise: with_field(event_body(), "properties", "{" + f'"p":{text}' + "}") + noise,
        json_texts(),
        byte_noise,
    ),
    json_texts().map(to_bytes),
)
odd_header = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=40)


@SETTINGS
@given(body=v1_bodies, idempotency_key=st.none() | odd_header)
def test_v1_never_answers_5xx_and_202_means_stored(client, application, api_secret, body, idempotency_key):
    # Given a correctly signed request whose body is nasty JSON text
    extra = {"HTTP_X_APP_UUID": str(application.uuid), "HTTP_X_SIGNATURE": sign(api_secret, body)}
    if idempotency_key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    before = Event.objects.count()

    response = client.generic("POST", URL, data=body, content_type="application/json", **extra)

    # Then it is a 202 that stored the event, or a 4xx that stored nothing
    assert response.status_code in (202, 400), (response.status_code, response.content[:300])
    stored = Event.objects.count() - before
    assert stored == (1 if response.status_code == 202 and "Idempotent-Replayed" not in response else 0)
    if response.status_code == 400 and response.json()["error"] == "validation_failed":
        assert all(detail["field"] for detail in response.json()["details"])


# --- SDK batches ----------------------------------------------------------------------------------

SDK_FIELDS = ["event_name", "ts_ms", "user.user_id", "device.os", "device.bundle_version", "properties", "extra"]


def nasty_event(field: str, text: str) -> str:
    """A valid event with `field` replaced by raw JSON text."""
    marker = "__NASTY__"
    event = sdk_event(**{field: marker})
    return json.dumps(event).replace(f'"{marker}"', text)


sdk_event_texts = st.builds(nasty_event, st.sampled_from(SDK_FIELDS), json_texts()) | st.builds(
    lambda: json.dumps(sdk_event())
)


@SETTINGS
@given(events=st.lists(sdk_event_texts, min_size=1, max_size=5), gzipped=st.booleans(), noise=byte_noise)
def test_sdk_batch_never_answers_5xx_and_accounts_for_every_event(api_client, sdk_key, events, gzipped, noise):
    # Given a batch of events with nasty values, plain or gzipped, sometimes with stray bytes in a string
    body = to_bytes('{"events": [' + ", ".join(events) + "]}")
    body = body.replace(b'"17.0"', b'"17.0' + noise + b'"', 1)
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    before = SdkEvent.objects.count()

    response = post_raw(api_client, EVENTS_URL, gzip.compress(body) if gzipped else body, key=sdk_key, **headers)

    # Then the envelope is refused whole (400), or every event is accounted for and the good ones stored
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])
    if response.status_code == 200:
        result = response.json()
        assert result["accepted"] + result["rejected"] == len(events)
        assert len({e["index"] for e in result["errors"]}) == result["rejected"]
        assert SdkEvent.objects.count() - before == result["accepted"]  # fresh event ids: each stored once
        assert all(depth(e.properties) <= MAX_DEPTH for e in SdkEvent.objects.all())
    else:
        assert SdkEvent.objects.count() == before


# --- identify -------------------------------------------------------------------------------------

identify_bodies = st.one_of(
    st.builds(
        lambda user_id, extra: to_bytes(f'{{"anon_id":"{uuid.uuid4()}","user_id":{user_id},"x":{extra}}}'),
        json_texts(),
        json_texts(),
    ),
    st.builds(
        lambda noise: b'{"anon_id":"' + str(uuid.uuid4()).encode() + b'","user_id":"u' + noise + b'"}', byte_noise
    ),
    json_texts().map(to_bytes),
)


@SETTINGS
@given(body=identify_bodies, key_noise=st.none() | odd_header)
def test_identify_never_answers_5xx_and_200_means_linked(api_client, sdk_key, body, key_noise):
    # Given an identify call with a nasty body, and sometimes an odd x-api-key
    key = sdk_key if key_noise is None else key_noise
    before = IdentifyLink.objects.count()

    response = post_raw(api_client, IDENTIFY_URL, body, key=key)

    # Then it links (200), or refuses with a documented 4xx and links nothing new
    assert response.status_code in (200, 400, 401), (response.status_code, response.content[:300])
    if response.status_code != 200:
        assert IdentifyLink.objects.count() == before
    else:
        payload = json.loads(body)
        assert IdentifyLink.objects.filter(anon_id=payload["anon_id"], user_id=payload["user_id"]).exists()
