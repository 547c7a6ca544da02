"""Whatever an SDK (or anyone holding a key) sends, the batch endpoint never answers 500.

Events are valid envelopes with fields replaced by arbitrary JSON or removed, or arbitrary JSON
altogether; the answer must be a 200 that accounts for every event, or a clean 400/413.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.models import SdkEvent
from ingest.schemas.sdk import batch_validate, event_check

from .sdk_helpers import EVENTS_URL, MISSING, post_raw, sdk_event

pytestmark = pytest.mark.django_db

FIELDS = [
    "schema_version",
    "event_id",
    "event_name",
    "ts_ms",
    "user",
    "user.anon_id",
    "user.user_id",
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
    "properties",
    "privacy",
    "privacy.consent",
    "privacy.consent.analytics",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.uuids().map(str)
    | st.sampled_from(["ios", "android", "US", "", "\x00"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_events(draw):
    event = sdk_event()
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        parent, _, leaf = field.rpartition(".")
        node = event
        for name in filter(None, parent.split(".")):
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[leaf] = draw(st.just(MISSING) | json_values)
            if node[leaf] is MISSING:
                del node[leaf]
    return event


batches = st.lists(mutated_events() | json_values, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=batches)
def test_batch_endpoint_never_answers_500(api_client, sdk_key, events):
    body = json.dumps({"events": events}).encode()

    response = post_raw(api_client, EVENTS_URL, body, key=sdk_key)

    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        result = response.json()
        assert result["accepted"] + result["rejected"] == len(events)
        assert {e["index"] for e in result["errors"]} <= set(range(len(events)))
        assert len({e["index"] for e in result["errors"]}) == result["rejected"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=json_values)
def test_arbitrary_json_body_is_never_500(api_client, sdk_key, payload):
    response = post_raw(api_client, EVENTS_URL, json.dumps(payload).encode(), key=sdk_key)

    assert response.status_code in (200, 400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_are_never_500(api_client, sdk_key, raw):
    response = post_raw(api_client, EVENTS_URL, raw, key=sdk_key)

    assert response.status_code in (200, 400)


@settings(max_examples=500, deadline=None)
@given(event=mutated_events())
def test_validator_accepts_only_storable_rows(event):
    row, errors = event_check(event)

    assert (row is None) == bool(errors)
    if row is not None:
        assert row["event_id"] == event["event_id"].lower()
        assert event["device"]["platform"] in ("ios", "android")
        assert isinstance(row["consent"], bool)


@settings(max_examples=500, deadline=None)
@given(event=mutated_events())
def test_fast_path_and_explaining_checker_agree(event):
    """msgspec decides and event_check explains: they must accept exactly the same events."""
    row, errors = event_check(event)

    result = batch_validate(json.dumps({"events": [event]}).encode(), max_events=1)

    assert result.rows == ([row] if row is not None else [])
    assert [(e["field"], e["message"]) for e in result.errors] == errors


def test_accepted_fuzzed_events_are_really_stored(api_client, sdk_key):
    events = [sdk_event(**{"properties": {"k": [1, {"z": None}], "é": "ü"}}), sdk_event(**{"user.user_id": ""})]

    result = post_raw(api_client, EVENTS_URL, json.dumps({"events": events}).encode(), key=sdk_key).json()

    assert result["accepted"] == 2
    assert SdkEvent.objects.count() == 2
