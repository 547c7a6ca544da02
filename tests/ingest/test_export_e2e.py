"""End to end: events posted through both APIs (and an identify call) reach BigQuery once, consented only."""

import datetime as dt
import json

import pytest

from ingest.services.export import export_drain

from .sdk_helpers import IDENTIFY_URL, post_events, post_raw, sdk_event
from .v1_helpers import USER_HASH, event_body, send

pytestmark = [pytest.mark.bigquery, pytest.mark.django_db]


def test_events_from_both_apis_land_in_bigquery_once(api_client, application, api_secret, sdk_key, bigquery):
    # Given a signed /v1 event, an SDK batch with one consented and one unconsented event, and an identify
    v1 = send(
        api_client,
        app_uuid=application.uuid,
        secret=api_secret,
        body=event_body(event="feature_used", properties={"feature": "export"}),
    )
    consented = sdk_event(event_name="paywall_shown")
    refused = sdk_event(**{"privacy.consent.analytics": False})
    sdk = post_events(api_client, sdk_key, [consented, refused])
    anon_id = consented["user"]["anon_id"]
    identify = post_raw(
        api_client, IDENTIFY_URL, json.dumps({"anon_id": anon_id, "user_id": "user-12345"}).encode(), key=sdk_key
    )
    assert all(200 <= r.status_code < 300 for r in (v1, sdk, identify))

    # When the exporter runs (twice: the second finds nothing)
    export_drain()
    export_drain()

    # Then BigQuery holds each accepted, consented row once, with the values that were sent
    [event] = bigquery.query("SELECT * FROM {events}")
    assert (event["event"], event["user_hash"], event["customer_org_id"], event["path"]) == (
        "feature_used",
        USER_HASH,
        "org_1",
        "/dashboard",
    )
    assert event["properties"] == {"feature": "export"}
    assert event["app_uuid"] == str(application.uuid)
    assert event["company_id"] == application.company_id
    [row] = bigquery.query("SELECT * FROM {sdk_events}")
    assert row["event_id"] == consented["event_id"]
    assert row["event_name"] == "paywall_shown"
    assert row["occurred_at"] == dt.datetime(2024, 2, 19, 12, 0, 0, 123000, tzinfo=dt.UTC)
    assert row["properties"] == {"product_id": "premium_monthly", "price": 9.99}
    assert bigquery.query("SELECT anon_id, user_id FROM {identify_links}") == [
        {"anon_id": anon_id, "user_id": "user-12345"}
    ]
