"""Admin lists over event-like tables: bounded counts, exact indexed searches, index-ordered sorting."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps_registry import admin_lists
from tests.factories import (
    EventFactory,
    IdentifyLinkFactory,
    SdkEventFactory,
    UserFactory,
    WebhookMessageFactory,
)

pytestmark = pytest.mark.django_db

EVENTS = "/admin/ingest/event/"


@pytest.fixture
def superuser(client):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    return client


def _table_queries(context: CaptureQueriesContext, table: str) -> list[str]:
    return [q["sql"] for q in context.captured_queries if f'"{table}"' in q["sql"]]


def test_a_large_list_is_counted_up_to_a_bound_then_estimated(superuser, monkeypatch):
    # Given more events than the exact-count bound
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_UP_TO", 3)
    EventFactory.create_batch(6)

    # When the list is opened
    with CaptureQueriesContext(connection) as queries:
        response = superuser.get(EVENTS)

    # Then no count reads the whole table: every COUNT over it is bounded by a LIMIT (the
    # dead-letter count reads the small partial index of dead rows)
    assert response.status_code == 200
    counts = [
        sql
        for sql in _table_queries(queries, "ingest_event")
        if "COUNT(" in sql.upper() and '"export_state" = 2' not in sql
    ]
    assert counts
    assert all("LIMIT 4" in sql for sql in counts), counts


def test_a_small_list_still_shows_its_exact_count(superuser):
    EventFactory.create_batch(3)

    body = superuser.get(EVENTS).content.decode()

    assert "3 events" in body


def test_event_search_is_exact_on_event_id_or_org_id_never_a_scan(superuser):
    # Given events of two orgs
    mine = EventFactory(customer_org_id="org_search_1")
    EventFactory(customer_org_id="org_search_2")

    # When support searches by org id, then by event id
    with CaptureQueriesContext(connection) as queries:
        by_org = superuser.get(EVENTS, {"q": "org_search_1"}).context["cl"].result_list
        by_id = superuser.get(EVENTS, {"q": str(mine.event_id)}).context["cl"].result_list

    # Then each finds exactly that org's row, with equality lookups (index-backed), no LIKE
    assert [e.pk for e in by_org] == [mine.pk]
    assert [e.pk for e in by_id] == [mine.pk]
    assert not [sql for sql in _table_queries(queries, "ingest_event") if "LIKE" in sql.upper()]


def test_sdk_event_search_by_event_id_goes_through_the_app_scoped_unique_index(superuser):
    event = SdkEventFactory()
    SdkEventFactory()

    with CaptureQueriesContext(connection) as queries:
        found = superuser.get("/admin/ingest/sdkevent/", {"q": str(event.event_id)}).context["cl"].result_list
        not_an_id = superuser.get("/admin/ingest/sdkevent/", {"q": "user-1"}).context["cl"].result_list

    assert [e.pk for e in found] == [event.pk]
    assert list(not_an_id) == []
    searched = [sql for sql in _table_queries(queries, "ingest_sdkevent") if '"event_id" =' in sql]
    assert searched
    assert all('"application_id" IN' in sql for sql in searched)


def test_identify_links_are_searched_by_exact_user_id(superuser):
    link = IdentifyLinkFactory(user_id="user-exact-1")
    IdentifyLinkFactory(user_id="user-exact-10")

    found = superuser.get("/admin/ingest/identifylink/", {"q": "user-exact-1"}).context["cl"].result_list

    assert [x.pk for x in found] == [link.pk]


def test_webhook_messages_are_searched_by_exact_id_or_source(superuser):
    message = WebhookMessageFactory(source="sdk_event:77")
    WebhookMessageFactory(source="sdk_event:770")

    by_source = superuser.get("/admin/webhooks/webhookmessage/", {"q": "sdk_event:77"}).context["cl"].result_list
    by_id = superuser.get("/admin/webhooks/webhookmessage/", {"q": message.pk}).context["cl"].result_list

    assert [m.pk for m in by_source] == [message.pk]
    assert [m.pk for m in by_id] == [message.pk]


def test_lists_sort_only_by_their_indexed_order(superuser):
    EventFactory.create_batch(2)

    # When someone asks for a sort by a column (the 2nd: org id)
    with CaptureQueriesContext(connection) as queries:
        response = superuser.get(EVENTS, {"o": "2"})

    # Then the page is still ordered by the primary key only
    assert response.status_code == 200
    # The export and rollup lag lines above the list are their own queries, not the list's order.
    lag_probes = ('"export_state" = 0', '"export_state" IN', "analytics_foldqueue")
    listed = [
        sql
        for sql in _table_queries(queries, "ingest_event")
        if "ORDER BY" in sql and not any(probe in sql for probe in lag_probes)
    ]
    assert listed
    assert all(sql.split("ORDER BY")[1].strip().startswith('"ingest_event"."id" DESC') for sql in listed)


def test_the_received_filter_narrows_by_time_and_webhook_messages_have_no_date_hierarchy(superuser):
    recent = EventFactory()
    EventFactory(received_at=timezone.now() - dt.timedelta(days=3))

    shown = superuser.get(EVENTS, {"received": "24h"}).context["cl"].result_list
    messages = superuser.get("/admin/webhooks/webhookmessage/", {"created": "7d"})

    assert [e.pk for e in shown] == [recent.pk]
    assert messages.status_code == 200
    assert messages.context["cl"].date_hierarchy is None


def test_list_pages_make_a_fixed_number_of_queries_and_never_scan_for_filter_choices(superuser):
    # Given SDK events of several applications and companies
    SdkEventFactory.create_batch(5)

    with CaptureQueriesContext(connection) as few:
        superuser.get("/admin/ingest/sdkevent/")
    SdkEventFactory.create_batch(10)
    with CaptureQueriesContext(connection) as more:
        response = superuser.get("/admin/ingest/sdkevent/?platform__exact=ios")

    # Then more rows cost no more queries (no per-row company lookup), and no DISTINCT over the table
    assert response.status_code == 200
    assert len(more.captured_queries) <= len(few.captured_queries)
    assert not [q["sql"] for q in more.captured_queries if "DISTINCT" in q["sql"]]
