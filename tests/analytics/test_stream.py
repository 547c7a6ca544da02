"""GET /api/v1/analytics/apps/{uuid}/stream: every stored field, newest first, keyset paging."""

import datetime as dt
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps_registry.models import Membership
from ingest import partitions
from ingest.models import Event, RawPartition
from ingest.partitions import partitions_cut_all
from tests.factories import (
    ApplicationFactory,
    EventFactory,
    MembershipFactory,
    PersonalApiKeyFactory,
    SdkEventFactory,
)

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def url(app, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/analytics/apps/{app.uuid}/stream" + (f"?{query}" if query else "")


@pytest.fixture
def reader(api_client, member_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    return api_client


def test_event_with_every_stored_field(reader, application):
    # Given one stored event with every field set
    event = EventFactory(
        application=application,
        event="feature_used",
        customer_org_id="org_42",
        path="/settings/billing",
        session_inferred=True,
        plan="pro",
        environment="staging",
        occurred_at=T0,
        received_at=T0 + dt.timedelta(milliseconds=250),
        properties={"feature": "export", "n": 3},
    )

    # When the stream is read
    response = reader.get(url(application))

    # Then it is there, field by field, times in ISO 8601 UTC
    assert response.status_code == 200
    assert response.json() == {
        "events": [
            {
                "event_id": str(event.event_id),
                "event": "feature_used",
                "user_hash": event.user_hash,
                "customer_org_id": "org_42",
                "path": "/settings/billing",
                "session_id": str(event.session_id),
                "session_inferred": True,
                "plan": "pro",
                "environment": "staging",
                "occurred_at": "2026-11-20T12:00:00Z",
                "received_at": "2026-11-20T12:00:00.250000Z",
                "properties": {"feature": "export", "n": 3},
            }
        ],
        "next": None,
    }


def test_sdk_event_fields_and_no_unconsented_events(reader, application):
    shown = SdkEventFactory(
        application=application, user_id="u-7", bundle_version=7.5, properties={"price": 9}, received_at=T0
    )
    SdkEventFactory(application=application, consent_analytics=False, received_at=T0 + dt.timedelta(seconds=1))

    body = reader.get(url(application, source="sdk_events")).json()

    assert body["next"] is None
    assert body["events"] == [
        {
            "event_id": str(shown.event_id),
            "event_name": "app_open",
            "schema_version": 1,
            "ts_ms": shown.ts_ms,
            "occurred_at": shown.occurred_at.isoformat().replace("+00:00", "Z"),
            "received_at": "2026-11-20T12:00:00Z",
            "anon_id": str(shown.anon_id),
            "user_id": "u-7",
            "platform": "ios",
            "os": "17.0",
            "app_version": "1.0.0",
            "sdk_version": "1.0.0",
            "locale": "en_US",
            "bundle_version": 7.5,
            "country": "US",
            "session_id": str(shown.session_id),
            "properties": {"price": 9},
        }
    ]


def test_newest_first_by_receive_time_then_id(reader, application):
    a = EventFactory(application=application, event="a", received_at=T0)
    b = EventFactory(application=application, event="b", received_at=T0 + dt.timedelta(seconds=1))
    c = EventFactory(application=application, event="c", received_at=T0)  # same time as a, larger id

    events = reader.get(url(application)).json()["events"]

    assert [e["event_id"] for e in events] == [str(b.event_id), str(c.event_id), str(a.event_id)]


def test_paging_while_inserting_has_no_gaps_or_repeats(reader, application):
    # Given 25 stored events, some sharing a receive time
    stored = [EventFactory(application=application, received_at=T0 + dt.timedelta(seconds=i // 3)) for i in range(25)]
    seen: list[str] = []
    page = reader.get(url(application, limit=4)).json()
    seen += [e["event_id"] for e in page["events"]]
    later = 0
    # When newer events keep arriving between pages (the stream's head moves)
    while page["next"]:
        EventFactory(application=application, received_at=T0 + dt.timedelta(hours=1, seconds=later))
        later += 1
        page = reader.get(url(application, limit=4, before=page["next"])).json()
        seen += [e["event_id"] for e in page["events"]]

    # Then paging back from the first page saw each earlier event exactly once, newest first
    expected = sorted(stored, key=lambda e: (e.received_at, e.id), reverse=True)
    assert seen == [str(e.event_id) for e in expected]
    # and the new events are at the head
    head = reader.get(url(application, limit=200)).json()["events"]
    assert len(head) == 25 + later


def test_filters(reader, application):
    EventFactory(application=application, event="signup", customer_org_id="org_1", environment="production")
    match = EventFactory(
        application=application,
        event="signup",
        customer_org_id="org_2",
        environment="staging",
        user_hash="f" * 64,
    )
    EventFactory(application=application, event="login", customer_org_id="org_2", environment="staging")

    body = reader.get(
        url(application, event="signup", customer_org_id="org_2", environment="staging", user="f" * 64)
    ).json()

    assert [e["event_id"] for e in body["events"]] == [str(match.event_id)]


def test_sdk_filters_by_event_name_and_user_or_device(reader, application):
    device = uuid.uuid4()
    by_user = SdkEventFactory(application=application, event_name="purchase", user_id="u-1")
    by_device = SdkEventFactory(application=application, event_name="purchase", anon_id=device)
    SdkEventFactory(application=application, event_name="app_open", user_id="u-1")

    def ids(**params) -> set[str]:
        return {e["event_id"] for e in reader.get(url(application, source="sdk_events", **params)).json()["events"]}

    assert ids(event="purchase", user="u-1") == {str(by_user.event_id)}
    assert ids(event="purchase", user=str(device)) == {str(by_device.event_id)}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "logs"}, "source"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"before": "not-a-cursor"}, "before"),
        ({"before": "MjAyNnwx"}, "before"),
        ({"source": "sdk_events", "customer_org_id": "org_1"}, "customer_org_id"),
        ({"source": "sdk_events", "environment": "production"}, "environment"),
    ],
)
def test_bad_parameters_get_400_naming_them(reader, application, params, field):
    response = reader.get(url(application, **params))

    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
    assert [d["field"] for d in response.json()["details"]] == [field]


def test_limit_is_capped_at_200(reader, application):
    EventFactory.create_batch(205, application=application)

    body = reader.get(url(application, limit=1000)).json()

    assert len(body["events"]) == 200
    assert body["next"]


def test_other_apps_events_are_not_shown(reader, application):
    EventFactory(application=ApplicationFactory(company=application.company))

    assert reader.get(url(application)).json()["events"] == []


def test_a_page_is_one_query_after_authentication(reader, application, django_assert_num_queries):
    EventFactory.create_batch(3, application=application)
    reader.get(url(application))  # the key's last_used_at is touched on first use only

    # key lookup, membership, application, then the page under the read timeout: its settings and the
    # page (plus SAVEPOINT/RELEASE here, where the test's transaction is already open)
    with django_assert_num_queries(7):
        response = reader.get(url(application, limit=2))
    with CaptureQueriesContext(connection) as ctx:
        reader.get(url(application, limit=2, before=response.json()["next"]))
    assert len(ctx.captured_queries) == 7
    assert "statement_timeout" in ctx.captured_queries[4]["sql"]


def test_page_is_an_index_range_scan(application):
    from analytics.stream import stream_sql

    EventFactory.create_batch(3, application=application)
    sql, params = stream_sql(app=application, source="events", limit=50, before=None)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    # each weekly partition's copy of the index, read backward and merged: no sort of the app's rows
    assert "event_app_received" in plan
    assert "Index Scan Backward" in plan
    nodes = [line.strip().removeprefix("->").strip() for line in plan.splitlines()]
    assert not [node for node in nodes if node.startswith(("Sort  (", "Incremental Sort  ("))], plan


def test_isolation(api_client, application, outsider, member):
    EventFactory(application=application)
    api_client.force_login(outsider)
    assert api_client.get(url(application)).status_code == 404
    api_client.logout()
    assert api_client.get(url(application)).status_code == 401
    api_client.force_login(member)
    assert api_client.get(url(application)).status_code == 200


@pytest.mark.parametrize("role", list(Membership.Role))
def test_every_role_reads_by_key_and_another_companys_key_gets_404(api_client, application, outsider, role):
    EventFactory(application=application)
    own = PersonalApiKeyFactory(user=MembershipFactory(company=application.company, role=role).user).raw_key
    foreign = PersonalApiKeyFactory(user=outsider).raw_key

    assert api_client.get(url(application), HTTP_AUTHORIZATION=f"Bearer {own}").status_code == 200
    assert api_client.get(url(application), HTTP_AUTHORIZATION=f"Bearer {foreign}").status_code == 404


def weeks_of_events(application, *, opened_ago: dt.timedelta) -> list[str]:
    """Five weeks of events, each week in its own partition as live, the newest opened `opened_ago`.

    Busy weeks, a week of one event and an empty one; around each cut, rows received within minutes
    on the wrong side of it (a request that began before the cut and drew its id after, and a web
    node whose clock runs ahead). Returns every event id, newest first by (received_at, id).
    """
    now = timezone.now()
    cut = now - opened_ago - dt.timedelta(days=28)
    for week, count in enumerate([120, 1, 0, 60, 7]):
        if week:
            EventFactory(application=application, received_at=cut + dt.timedelta(minutes=20))  # clock ahead
            partitions_cut_all(now=cut)
            EventFactory(application=application, received_at=cut - dt.timedelta(minutes=10))  # began before
            EventFactory(application=application, received_at=cut + dt.timedelta(minutes=5))  # before the fast clock's
        span = min(now, cut + dt.timedelta(days=7)) - cut
        for i in range(count):
            EventFactory(application=application, received_at=cut + span * (i + 1) / (count + 1))
        cut += dt.timedelta(days=7)
    return [str(e) for e in Event.objects.order_by("-received_at", "-id").values_list("event_id", flat=True)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("opened_ago", [dt.timedelta(days=3), dt.timedelta(minutes=30)], ids=["midweek", "just-cut"])
@pytest.mark.parametrize("limit", [1, 7, 50, 200])
def test_pages_over_weekly_partitions_are_every_event_once_newest_first(reader, application, opened_ago, limit):
    # Given five weeks of events in five partitions, with rows received across each cut
    expected = weeks_of_events(application, opened_ago=opened_ago)

    # When the whole stream is read page by page
    seen, cursor = [], None
    while True:
        params = {"limit": limit} | ({"before": cursor} if cursor else {})
        page = reader.get(url(application, **params)).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next"]
        if cursor is None:
            break

    # Then it is every event once, in the order of their receipt, whatever weeks a page spans
    assert seen == expected


@pytest.mark.django_db(transaction=True)
def test_the_first_page_is_planned_over_the_newest_week_alone(reader, application):
    # Given five weekly partitions, the newest opened three days ago and holding more than a page
    weeks_of_events(application, opened_ago=dt.timedelta(days=3))
    EventFactory.create_batch(3, application=application)

    # When the first page of 5 is read
    with CaptureQueriesContext(connection) as ctx:
        page = reader.get(url(application, limit=5)).json()
    statements = [q["sql"] for q in ctx.captured_queries if "json_build_object" in q["sql"]]

    # Then it is one statement, and PostgreSQL plans it over the newest partition (and the empty one
    # made ahead, where rows go once the week is cut), none of the older weeks
    assert len(page["events"]) == 5
    assert len(statements) == 1
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statements[0]}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    newest = RawPartition.objects.filter(table="ingest_event").order_by("-number").first()
    scanned = set(re.findall(r"ingest_event_p\d+", plan))
    assert scanned == {f"ingest_event_p{newest.number}", f"ingest_event_p{newest.number + 1}"}, plan


@pytest.mark.django_db(transaction=True)
def test_a_process_that_has_not_seen_the_cut_yet_still_shows_the_new_weeks_events(reader, application, monkeypatch):
    # Given a web process that read the partition registry (kept for a few seconds) before a cut
    # made by the worker, and events stored in the new week since
    weeks_of_events(application, opened_ago=dt.timedelta(days=3))
    reader.get(url(application))
    monkeypatch.setattr(partitions, "registry_forget", lambda: None)  # the cut happens in another process
    partitions_cut_all()
    new = EventFactory.create_batch(2, application=application)

    # When the stream is read
    page = reader.get(url(application, limit=2)).json()

    # Then the new week's events are on the first page
    assert [e["event_id"] for e in page["events"]] == [str(e.event_id) for e in reversed(new)]
