"""Admin lists over event-like tables: bounded counts, exact indexed searches, index-ordered sorting."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps_registry import admin_lists
from ingest.partitions import BLOCK, partition_cut, partitions_maintain
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


def test_the_estimate_of_a_large_filtered_list_plans_the_table_alone(superuser, monkeypatch):
    # Given more events in a window than the exact-count bound
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_UP_TO", 3)
    EventFactory.create_batch(6)

    # When the window is listed
    with CaptureQueriesContext(connection) as queries:
        response = superuser.get(EVENTS, {"received": "24h"})

    # Then its count is the planner's estimate of the filtered table alone: the page's joins (the
    # application and company of each row) would be planned for every partition and change nothing
    assert response.status_code == 200
    estimates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("EXPLAIN")]
    assert len(estimates) == 1
    assert '"ingest_event"."received_at" >=' in estimates[0]
    assert "JOIN" not in estimates[0], estimates


@pytest.mark.django_db(transaction=True)  # a cut moves the id sequence, which no rollback undoes
def test_the_estimate_of_a_large_list_counts_every_weekly_partition(superuser, monkeypatch):
    # Given more events than the exact-count bound, in two weekly partitions, analyzed
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_UP_TO", 3)
    EventFactory.create_batch(4)
    partition_cut("ingest_event")
    EventFactory.create_batch(5)
    with connection.cursor() as cursor:  # what autovacuum does: analyze partitions, never the parent
        cursor.execute("SELECT relid::regclass::text FROM pg_partition_tree('ingest_event') WHERE isleaf")
        for (partition,) in cursor.fetchall():
            cursor.execute(f"ANALYZE {partition}")

    # When the list is opened, then its count is the partitions' rows together
    assert "9 events" in superuser.get(EVENTS).content.decode()


@pytest.mark.django_db(transaction=True)  # a cut moves the id sequence, which no rollback undoes
def test_a_received_within_window_reads_only_the_partitions_open_in_it(superuser):
    # Given events of a week that closed two days ago, and of the current week
    start = timezone.now() - dt.timedelta(days=9)
    partitions_maintain(now=start)
    old = EventFactory(received_at=start)
    number = partition_cut("ingest_event", now=start + dt.timedelta(days=7))
    new = EventFactory()

    # When support lists the events received in the last 24 hours
    with CaptureQueriesContext(connection) as queries:
        listed = superuser.get(EVENTS, {"received": "24h"}).context["cl"].result_list

    # Then only the new one is listed, and every list query bounds the ids at the current partition
    assert [e.pk for e in listed] == [new.pk]
    assert old.pk < number * BLOCK <= new.pk
    reads = [sql for sql in _table_queries(queries, "ingest_event") if '"received_at" >=' in sql]
    assert reads
    assert all(f'"id" >= {number * BLOCK}' in sql for sql in reads), reads


@pytest.mark.django_db(transaction=True)  # a cut moves the id sequence, which no rollback undoes
def test_a_received_within_page_takes_its_partition_bound_from_the_kept_registry(superuser):
    # Given a week that closed two days ago and the current one, and the list looked at once
    start = timezone.now() - dt.timedelta(days=9)
    partitions_maintain(now=start)
    EventFactory(received_at=start)
    number = partition_cut("ingest_event", now=start + dt.timedelta(days=7))
    new = EventFactory()
    superuser.get(EVENTS, {"received": "24h"})

    # When support lists the events received in the last 24 hours again
    with CaptureQueriesContext(connection) as queries:
        listed = superuser.get(EVENTS, {"received": "24h"}).context["cl"].result_list

    # Then the reads are bounded at the current partition as before, and the bound cost no statement:
    # neither the partition registry nor the catalog is read (the registry kept by the process is)
    assert [e.pk for e in listed] == [new.pk]
    reads = [sql for sql in _table_queries(queries, "ingest_event") if '"received_at" >=' in sql]
    assert reads
    assert all(f'"id" >= {number * BLOCK}' in sql for sql in reads), reads
    assert [q["sql"] for q in queries.captured_queries if "ingest_rawpartition" in q["sql"]] == []
    assert [q["sql"] for q in queries.captured_queries if "pg_inherits" in q["sql"]] == []


def test_an_empty_received_within_window_reads_past_the_newest_row(superuser):
    # Given events received three days ago and none since (ingest stopped)
    older = EventFactory.create_batch(2, received_at=timezone.now() - dt.timedelta(days=3))
    newest = max(e.pk for e in older)

    # When support lists the events received in the last hour
    with CaptureQueriesContext(connection) as queries:
        hour = superuser.get(EVENTS, {"received": "1h"}).context["cl"].result_list
    reads = [sql for sql in _table_queries(queries, "ingest_event") if '"received_at" >=' in sql]

    # Then the hour is empty and every read of it starts past the newest row, where the primary key
    # finds nothing at once (the planner's statistics end before an empty window: it may otherwise
    # read a whole index of the open partition); the last 7 days list both
    assert list(hour) == []
    assert reads
    assert all(f'"id" >= {newest + 1}' in sql for sql in reads), reads
    week = superuser.get(EVENTS, {"received": "7d"}).context["cl"].result_list
    assert sorted(e.pk for e in week) == sorted(e.pk for e in older)


def test_a_received_within_window_keeps_rows_whose_clocks_differ_within_the_margin(superuser):
    # Given an event received 30 minutes ago, stored before one stamped 90 minutes ago (its web
    # node's clock behind by an hour, within the clock margin)
    ahead = EventFactory(received_at=timezone.now() - dt.timedelta(minutes=30))
    EventFactory(received_at=timezone.now() - dt.timedelta(minutes=90))

    # When support lists the events received in the last hour, then the first is listed
    listed = superuser.get(EVENTS, {"received": "1h"}).context["cl"].result_list
    assert [e.pk for e in listed] == [ahead.pk]


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


def test_sdk_event_search_by_event_id_goes_through_the_app_scoped_dedup_keys(superuser):
    event = SdkEventFactory()
    SdkEventFactory()

    with CaptureQueriesContext(connection) as queries:
        found = superuser.get("/admin/ingest/sdkevent/", {"q": str(event.event_id)}).context["cl"].result_list
        not_an_id = superuser.get("/admin/ingest/sdkevent/", {"q": "user-1"}).context["cl"].result_list

    assert [e.pk for e in found] == [event.pk]
    assert list(not_an_id) == []
    # the key table's (application, event_id) primary key names the row; the events are read by id
    searched = [sql for sql in _table_queries(queries, "ingest_sdkeventkey") if '"event_id" =' in sql]
    assert searched
    assert all('"application_id" IN' in sql for sql in searched)
    assert not [sql for sql in _table_queries(queries, "ingest_sdkevent") if '"event_id" =' in sql]


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


def test_lists_sort_only_by_their_indexed_order(superuser, monkeypatch):
    # Given more events than the exact-count bound (a large list: read in index order)
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_UP_TO", 1)
    EventFactory.create_batch(3)

    # When someone asks for a sort by a column (the 2nd: org id)
    with CaptureQueriesContext(connection) as queries:
        response = superuser.get(EVENTS, {"o": "2"})

    # Then the page is still ordered by the primary key only
    assert response.status_code == 200
    # The export and rollup lag lines above the list are their own queries, not the list's order.
    lag_probes = ('"export_state" = 0', '"export_state" IN', "analytics_foldqueue")
    ordered = [
        sql
        for sql in _table_queries(queries, "ingest_event")
        if "ORDER BY" in sql and not any(probe in sql for probe in lag_probes)
    ]
    listed = [sql for sql in ordered if "COUNT(" not in sql]
    counts = [sql for sql in ordered if "COUNT(" in sql]
    assert listed
    assert all(sql.split("ORDER BY")[1].strip().startswith('"ingest_event"."id" DESC') for sql in listed)
    # the bounded count reads the same order, selecting the key alone (an index-only scan)
    assert counts
    assert all('SELECT "ingest_event"."id" AS "id" FROM' in sql and "ORDER BY 1 DESC" in sql for sql in counts), counts


def test_the_received_filter_narrows_by_time_and_webhook_messages_have_no_date_hierarchy(superuser):
    EventFactory(received_at=timezone.now() - dt.timedelta(days=3))  # stored in receive order, as ingest does
    recent = EventFactory()

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


# --- Prefix searches, per-table filters, account admins' lists (issue 13, the back office at scale) ---


def test_a_term_ending_with_a_star_searches_by_prefix_through_the_same_indexes(superuser):
    # Given events, links and messages whose ids share prefixes
    org_12 = EventFactory(customer_org_id="org_12")
    org_123 = EventFactory(customer_org_id="org_123")
    EventFactory(customer_org_id="org_2")
    link = IdentifyLinkFactory(user_id="user_abc")
    IdentifyLinkFactory(user_id="other_abc")
    message = WebhookMessageFactory(id="msg_0a1b2c", source="sdk_event:55")
    WebhookMessageFactory(id="msg_ffff", source="identify_link:55")

    def listed(url: str, term: str) -> list:
        return [row.pk for row in superuser.get(url, {"q": term}).context["cl"].result_list]

    # When support searches with a trailing *
    with CaptureQueriesContext(connection) as queries:
        orgs = listed(EVENTS, "org_12*")
        users = listed("/admin/ingest/identifylink/", "user_*")
        by_id = listed("/admin/webhooks/webhookmessage/", "msg_0a*")
        by_source = listed("/admin/webhooks/webhookmessage/", "sdk_event:*")

    # Then every row starting with it is found, newest first, with a prefix LIKE (an index range
    # under the C collation), never a LIKE '%...%'
    assert orgs == [org_123.pk, org_12.pk]
    assert users == [link.pk]
    assert by_id == [message.pk]
    assert by_source == [message.pk]
    likes = [q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"].upper()]
    assert likes
    assert not [sql for sql in likes if "LIKE '%" in sql.upper() or "UPPER(" in sql.upper()]


def test_a_too_short_prefix_is_an_exact_search(superuser):
    EventFactory(customer_org_id="org_1")

    found = superuser.get(EVENTS, {"q": "or*"}).context["cl"].result_list

    assert list(found) == []


def test_the_export_state_filter_offers_only_states_the_table_can_hold(superuser):
    # Given an event, and SDK events with and without analytics consent
    EventFactory()
    skipped = SdkEventFactory(consent_analytics=False, export_state=3)
    SdkEventFactory()

    events = superuser.get(EVENTS)
    sdk = superuser.get("/admin/ingest/sdkevent/")
    events_skipped = superuser.get(EVENTS, {"export_state__exact": "3"})
    sdk_skipped = superuser.get("/admin/ingest/sdkevent/", {"export_state__exact": "3"})

    # Then only SDK events offer "not exported (no analytics consent)" (events never lack it), a
    # typed-in state a table never holds lists nothing, and the SDK filter finds the skipped row
    assert "no analytics consent" not in events.content.decode()
    assert "no analytics consent" in sdk.content.decode()
    assert list(events_skipped.context["cl"].result_list) == []
    assert [e.pk for e in sdk_skipped.context["cl"].result_list] == [skipped.pk]
    # the boolean consent filter is gone: the export state above is exactly those rows
    assert "consent_analytics__exact" not in sdk.content.decode()


def test_the_dead_letter_filter_still_lists_dead_rows(superuser):
    dead = EventFactory(export_state=2)
    EventFactory()

    shown = superuser.get(EVENTS, {"export_state__exact": "2"}).context["cl"].result_list

    assert [e.pk for e in shown] == [dead.pk]


def test_webhook_messages_filter_by_rare_type_and_creation_window(superuser):
    rare = WebhookMessageFactory(event_type="experiment.exposure")
    WebhookMessageFactory(event_type="onboarding.started")
    WebhookMessageFactory(event_type="experiment.exposure", created_at=timezone.now() - dt.timedelta(days=3))

    url = "/admin/webhooks/webhookmessage/"
    by_type = superuser.get(url, {"event_type__exact": "experiment.exposure", "created": "24h"})

    assert [m.pk for m in by_type.context["cl"].result_list] == [rare.pk]


@pytest.fixture
def two_companies(db):
    from tests.factories import ApplicationFactory, MembershipFactory, WebhookEndpointFactory

    app_a, app_b = ApplicationFactory(), ApplicationFactory()
    endpoint_a = WebhookEndpointFactory(company=app_a.company, application=app_a)
    endpoint_b = WebhookEndpointFactory(company=app_b.company, application=app_b)
    admin_a = MembershipFactory(company=app_a.company, role="admin").user
    return {"app_a": app_a, "app_b": app_b, "endpoint_a": endpoint_a, "endpoint_b": endpoint_b, "admin_a": admin_a}


def test_an_account_admins_event_list_is_their_company_newest_received_first(client, two_companies):
    # Given events of two companies; one of company A's was received late (a higher received_at
    # than a row stored after it)
    app_a, app_b = two_companies["app_a"], two_companies["app_b"]
    now = timezone.now()
    late = EventFactory(application=app_a, received_at=now)
    early = EventFactory(application=app_a, received_at=now - dt.timedelta(minutes=5))
    EventFactory(application=app_b)
    client.force_login(two_companies["admin_a"])

    # When A's account admin opens the list
    with CaptureQueriesContext(connection) as queries:
        response = client.get(EVENTS)

    # Then they see only A's rows, newest received first, read by company and received time
    # (the (company, received_at) index), with the exact count
    assert [e.pk for e in response.context["cl"].result_list] == [late.pk, early.pk]
    assert "2 events" in response.content.decode()
    listed = [
        sql
        for sql in _table_queries(queries, "ingest_event")
        if "ORDER BY" in sql and '"ingest_event"."received_at"' in sql.split("ORDER BY")[-1].split(",")[0]
    ]
    assert listed
    assert all('"ingest_event"."company_id" =' in sql for sql in listed)


def test_an_account_admins_message_list_reads_their_endpoints_by_id(client, two_companies):
    mine = WebhookMessageFactory(endpoint=two_companies["endpoint_a"])
    WebhookMessageFactory(endpoint=two_companies["endpoint_b"])
    client.force_login(two_companies["admin_a"])

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/webhooks/webhookmessage/")

    assert [m.pk for m in response.context["cl"].result_list] == [mine.pk]
    listed = [sql for sql in _table_queries(queries, "webhooks_webhookmessage") if "ORDER BY" in sql]
    assert listed
    # the company's endpoints by id (the (endpoint, id) index), not a filter on the endpoint's company
    where = [sql.split(" WHERE ", 1)[1] for sql in listed]
    assert all('"endpoint_id" IN' in w and '"company_id"' not in w for w in where), where


def test_the_row_checkbox_is_djangos_own_html(superuser):
    # The lists format the action checkbox directly (no widget template per row): the admin's
    # actions script must still find it, so it must be exactly what Django renders.
    from django.contrib.admin import ModelAdmin, site

    from ingest.models import Event

    event = EventFactory()
    model_admin = site._registry[Event]

    assert model_admin.action_checkbox(event) == ModelAdmin.action_checkbox(model_admin, event)
    assert 'class="action-select"' in superuser.get(EVENTS).content.decode()


def test_when_few_rows_match_the_page_sorts_them_instead_of_walking_an_index(superuser):
    # Given events received a week ago and one an hour ago (a "last 24 h" window PostgreSQL may
    # misjudge: walking the primary key newest first to find it reads every row at 10 M rows)
    old = EventFactory.create_batch(3, received_at=timezone.now() - dt.timedelta(days=7))
    recent = EventFactory(received_at=timezone.now() - dt.timedelta(hours=1))

    with CaptureQueriesContext(connection) as queries:
        window = superuser.get(EVENTS, {"received": "24h"}).context["cl"].result_list
        everything = superuser.get(EVENTS).context["cl"].result_list

    # Then each list is still newest first, and since the bounded count found few rows, the page
    # is ordered by an expression no index provides: the rows are fetched through the filter and
    # sorted, never found by walking the key
    assert [e.pk for e in window] == [recent.pk]
    assert [e.pk for e in everything] == [recent.pk, *sorted((e.pk for e in old), reverse=True)]
    lag_probes = ('"export_state" = 0', '"export_state" IN', "analytics_foldqueue")
    pages = [
        sql
        for sql in _table_queries(queries, "ingest_event")
        if "ORDER BY" in sql
        and "COUNT(" not in sql
        and not sql.endswith("LIMIT 1")  # the window's probe of the newest row
        and not any(probe in sql for probe in lag_probes)
    ]
    assert len(pages) == 2
    assert all('ORDER BY COALESCE("ingest_event"."id", "ingest_event"."id") DESC' in sql for sql in pages), pages


def test_the_endpoint_filter_lists_the_users_endpoints_without_reading_the_messages(client, two_companies):
    # Given messages of two companies' endpoints
    mine = WebhookMessageFactory(endpoint=two_companies["endpoint_a"])
    WebhookMessageFactory(endpoint=two_companies["endpoint_b"])
    client.force_login(two_companies["admin_a"])
    url = "/admin/webhooks/webhookmessage/"

    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    own = client.get(url, {"endpoint__id__exact": two_companies["endpoint_a"].pk})
    foreign = client.get(url, {"endpoint__id__exact": two_companies["endpoint_b"].pk})

    # Then the filter offers only their endpoint, filters by it, gives nothing for another
    # company's endpoint, and no query reads DISTINCT endpoints over the messages
    body = page.content.decode()
    assert f"endpoint__id__exact={two_companies['endpoint_a'].pk}" in body
    assert f"endpoint__id__exact={two_companies['endpoint_b'].pk}" not in body
    assert [m.pk for m in own.context["cl"].result_list] == [mine.pk]
    assert list(foreign.context["cl"].result_list) == []
    assert not [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"]]
