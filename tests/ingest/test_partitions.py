"""Weekly partitions of the raw tables: ingest across a cut, dedup across partitions, retention by drop."""

import datetime as dt
import io
import json
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from analytics.fold import fold_drain
from analytics.models import DailyTotal
from ingest.models import Event, IdentifyKey, IdentifyLink, RawPartition, SdkEvent, SdkEventKey
from ingest.partitions import BLOCK, partition_cut, partitions_cut_all, partitions_list, partitions_maintain
from ingest.services.export import export_drain
from ingest.services.retention import retention_apply
from tests.factories import ApplicationFactory, CompanyFactory, EventFactory
from tests.raw_rows import OLD_EVENTS_SQL

from .sdk_helpers import IDENTIFY_URL, post_events, post_raw, sdk_event
from .v1_helpers import event_body, send

TABLES = ("ingest_event", "ingest_sdkevent", "ingest_identifylink")


def partition_of(model, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def attached(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
            " WHERE h.inhparent = %s::regclass",
            [table],
        )
        return {name for (name,) in cursor.fetchall()}


def identify(client, key: str, anon_id: str, user_id: str):
    return post_raw(client, IDENTIFY_URL, json.dumps({"anon_id": anon_id, "user_id": user_id}).encode(), key=key)


def next_monday(now: dt.datetime) -> dt.datetime:
    day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + dt.timedelta(days=7 - day.weekday(), hours=1)


@pytest.mark.bigquery
@pytest.mark.django_db(transaction=True)
def test_ingest_export_and_fold_go_on_across_the_weekly_cut(api_client, application, api_secret, sdk_key, bigquery):
    # Given events of both APIs and an identify link stored this week
    this_week = partitions_maintain()
    before = [sdk_event(event_name="session_start") for _ in range(3)]
    assert post_events(api_client, sdk_key, before).status_code == 200
    assert send(api_client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    assert identify(api_client, sdk_key, before[0]["user"]["anon_id"], "user-1").status_code == 200

    # When maintenance runs in the next week, and more arrive
    current = partitions_maintain(now=next_monday(timezone.now()))
    after = [sdk_event(event_name="session_start") for _ in range(2)]
    assert post_events(api_client, sdk_key, after).status_code == 200
    assert send(api_client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    assert identify(api_client, sdk_key, after[0]["user"]["anon_id"], "user-2").status_code == 200

    # Then each table took the new rows in a new partition, made ahead, with the next one ready too
    for table in TABLES:
        assert current[table] >= 1
        assert {f"{table}_p{current[table]}", f"{table}_p{current[table] + 1}"} <= attached(table)
    events = list(Event.objects.order_by("id"))
    assert [partition_of(Event, e.id) for e in events] == [
        f"ingest_event_p{this_week['ingest_event']}",
        f"ingest_event_p{current['ingest_event']}",
    ]
    assert events[1].id >= current["ingest_event"] * BLOCK
    links = list(IdentifyLink.objects.order_by("id"))
    assert links[-1].id >= current["ingest_identifylink"] * BLOCK
    # and the export and the fold passed the gap: every row in BigQuery and the rollups once
    export_drain()
    export_drain()
    assert bigquery.count("sdk_events") == 5
    assert bigquery.count("events") == 2
    assert bigquery.count("identify_links") == 2
    fold_drain()
    assert (
        sum(DailyTotal.objects.filter(application=application, environment="*").values_list("events", flat=True)) == 7
    )


@pytest.mark.django_db(transaction=True)
def test_an_sdk_retry_after_the_cut_is_stored_once_and_an_identify_repeat_adds_nothing(api_client, sdk_key):
    # Given a batch and an identify link stored before the cut
    batch = [sdk_event(), sdk_event()]
    assert post_events(api_client, sdk_key, batch).status_code == 200
    anon_id = batch[0]["user"]["anon_id"]
    assert identify(api_client, sdk_key, anon_id, "user-1").json()["created"] is True
    link = IdentifyLink.objects.get()

    # When the tables are cut and the client retries both events, with one new, and the identify
    number = partitions_cut_all()["ingest_sdkevent"]
    new = sdk_event()
    assert post_events(api_client, sdk_key, [*batch, new]).status_code == 200
    again = identify(api_client, sdk_key, anon_id, "user-1").json()

    # Then only the new event is stored (in the new partition), and the link is the same row, seen later
    stored = {str(e.event_id): e.id for e in SdkEvent.objects.all()}
    assert sorted(stored) == sorted(e["event_id"] for e in [*batch, new])
    assert stored[new["event_id"]] >= number * BLOCK > stored[batch[0]["event_id"]]
    assert again["created"] is False
    [same] = IdentifyLink.objects.all()
    assert (same.id, same.link_id) == (link.id, link.link_id)
    assert same.last_seen_at >= link.last_seen_at


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ingest_never_fails_while_the_tables_are_cut_under_load(application, sdk_key, api_secret):
    # Given four clients sending SDK batches (each sent twice, as a retrying SDK does) and /v1 events
    sent: list[str] = []
    failures: list[int] = []
    stop = threading.Event()

    def sdk_client() -> None:
        client = Client()
        while not stop.is_set():
            batch = [sdk_event() for _ in range(5)]
            for _ in range(2):
                status = post_events(client, sdk_key, batch).status_code
                if status != 200:
                    failures.append(status)
            sent.extend(e["event_id"] for e in batch)
        connection.close()

    def v1_client(accepted: list) -> None:
        client = Client()
        while not stop.is_set():
            response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body())
            if response.status_code != 202:
                failures.append(response.status_code)
            else:
                accepted.append(response.json()["event_id"])
        connection.close()

    v1_accepted: list[str] = []
    threads = [threading.Thread(target=sdk_client) for _ in range(3)] + [
        threading.Thread(target=v1_client, args=(v1_accepted,))
    ]
    for thread in threads:
        thread.start()

    # When the tables are cut five times meanwhile
    try:
        for _ in range(5):
            partitions_cut_all()
            threading.Event().wait(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    # Then no request failed, every event is stored once, and they spread over the partitions
    assert failures == []
    assert sorted(str(i) for i in SdkEvent.objects.values_list("event_id", flat=True)) == sorted(sent)
    assert sorted(str(i) for i in Event.objects.values_list("event_id", flat=True)) == sorted(v1_accepted)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT tableoid) FROM ingest_sdkevent")
        assert cursor.fetchone()[0] >= 3


@pytest.mark.django_db(transaction=True)
def test_an_sdk_event_id_is_remembered_for_the_dedup_window_and_no_longer(api_client, application, sdk_key, settings):
    # Given a company keeping events 7 days, a 35-day dedup window, and an event stored 34 days ago
    settings.SDK_DEDUP_DAYS = 35
    application.company.retention_days_override = 7
    application.company.save()
    event = sdk_event()
    assert post_events(api_client, sdk_key, [event]).status_code == 200
    now = timezone.now()
    SdkEventKey.objects.update(received_at=now - dt.timedelta(days=34))

    # When retention runs and the SDK retries: the id is remembered (the row's own retention is shorter)
    retention_apply(now=now)
    post_events(api_client, sdk_key, [event])
    assert SdkEvent.objects.filter(event_id=event["event_id"]).count() == 1
    assert SdkEventKey.objects.count() == 1

    # When the key is older than the window (36 days) and retention runs, a retry is a new event
    SdkEventKey.objects.update(received_at=now - dt.timedelta(days=36))
    assert retention_apply(now=now)["sdk_event_keys"] == 1
    post_events(api_client, sdk_key, [event])
    assert SdkEventKey.objects.count() == 1
    assert SdkEvent.objects.filter(event_id=event["event_id"]).count() == 2  # the documented edge


@pytest.mark.django_db(transaction=True)
def test_a_company_keeping_events_longer_than_the_window_keeps_its_keys_as_long(api_client, application, sdk_key):
    # Given a company keeping events 90 days and an event stored 60 days ago
    application.company.retention_days_override = 90
    application.company.save()
    event = sdk_event()
    post_events(api_client, sdk_key, [event])
    SdkEventKey.objects.update(received_at=timezone.now() - dt.timedelta(days=60))

    # When retention runs and the SDK retries
    retention_apply()
    post_events(api_client, sdk_key, [event])

    # Then it is stored once
    assert SdkEvent.objects.filter(event_id=event["event_id"]).count() == 1


def _settle_everything() -> None:
    """Export (rows of these tests are owed to no sink: BigQuery is off) and fold every stored row."""
    export_drain()
    fold_drain()


@pytest.mark.bigquery
@pytest.mark.django_db(transaction=True)
def test_a_closed_partition_is_dropped_once_its_longest_retention_passed_and_nothing_is_owed(bigquery, api_client):
    # Given a week of events of a company keeping 30 days and one keeping 60, then a cut, then newer rows
    short = ApplicationFactory(company=CompanyFactory(retention_days_override=30))
    long = ApplicationFactory(company=CompanyFactory(retention_days_override=60))
    start = timezone.now()
    partitions_maintain(now=start)
    for _ in range(3):
        EventFactory(application=short, received_at=start)
    old_long = [EventFactory(application=long, received_at=start) for _ in range(2)]
    closed = start + dt.timedelta(days=1)
    partition_cut("ingest_event", now=closed)
    [week] = [p for p in partitions_list("ingest_event") if p.closed_at is not None]
    young = EventFactory(application=long, received_at=closed + dt.timedelta(days=20))
    _settle_everything()

    # When retention runs 31 days after the cut: the short company's old rows go one by one
    counts = retention_apply(now=closed + dt.timedelta(days=31))
    assert counts["partitions_dropped"] == 0
    assert counts["events"] == 3
    assert set(Event.objects.values_list("id", flat=True)) == {e.id for e in [*old_long, young]}

    # When it runs 61 days after: the long company's rows are left to the drop, which takes the week
    counts = retention_apply(now=closed + dt.timedelta(days=61))
    assert counts["partitions_dropped"] == 1
    assert f"ingest_event_p{week.number}" not in attached("ingest_event")
    assert not RawPartition.objects.filter(table="ingest_event", number=week.number).exists()
    assert list(Event.objects.values_list("id", flat=True)) == [young.id]  # the young partition is untouched


@pytest.mark.bigquery
@pytest.mark.django_db(transaction=True)
def test_a_partition_holding_a_row_still_owed_is_not_dropped(bigquery, settings):
    # Given a closed week whose rows are past retention, one of them not exported yet (BigQuery down)
    app = ApplicationFactory(company=CompanyFactory(retention_days_override=30))
    start = timezone.now()
    partitions_maintain(now=start)
    EventFactory(application=app, received_at=start)
    fold_drain()
    partition_cut("ingest_event", now=start)

    # When retention runs long after: the week stays, and so does the row
    later = start + dt.timedelta(days=90)
    assert retention_apply(now=later)["partitions_dropped"] == 0
    assert Event.objects.count() == 1

    # When the row is exported, the week goes
    export_drain()
    assert retention_apply(now=later)["partitions_dropped"] == 1
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_identify_links_dropped_with_their_partition_can_be_linked_again(api_client, application, sdk_key):
    # Given a link stored in a week that closed long ago, settled (BigQuery is off: nothing owed)
    application.company.retention_days_override = 30
    application.company.save()
    anon_id = sdk_event()["user"]["anon_id"]
    start = timezone.now()
    partitions_maintain(now=start)
    identify(api_client, sdk_key, anon_id, "user-1")
    IdentifyLink.objects.update(export_state=3, webhook_pending=False)  # no sink owed (as SKIPPED rows are)
    partition_cut("ingest_identifylink", now=start)

    # When retention drops the week
    assert retention_apply(now=start + dt.timedelta(days=40))["partitions_dropped"] >= 1

    # Then the link and its key are gone, and the same identify stores it again
    assert not IdentifyLink.objects.exists()
    assert not IdentifyKey.objects.exists()
    assert identify(api_client, sdk_key, anon_id, "user-1").json()["created"] is True
    assert IdentifyLink.objects.count() == 1


SDK_ROW_SQL = (
    "INSERT INTO ingest_sdkevent (company_id, application_id, received_at, export_state, export_attempts,"
    " export_error, webhook_pending, event_id, schema_version, event_name, ts_ms, occurred_at, anon_id,"
    " platform, os, app_version, sdk_version, locale, bundle_version, country, session_id,"
    " consent_analytics) VALUES (%s, %s, now(), 0, 0, '', false, %s, 1, 'old', 0, now(), %s, 'ios',"
    " '17', '1', '1', 'en', 1, 'US', gen_random_uuid(), true)"
)


@pytest.mark.parametrize("procedure", ["migrate", "large-table steps"])
@pytest.mark.django_db(transaction=True)
def test_upgrading_keeps_the_rows_and_their_dedup(api_client, application, sdk_key, procedure):
    # Given the unpartitioned tables holding events, SDK events and a link (for the large-table
    # steps: the key tables of 0010 filled by the backfill command, one more SDK event stored after
    # it, and the bound constraints validated by hand)
    executor = MigrationExecutor(connection)
    executor.migrate([("ingest", "0009_export_ledger" if procedure == "migrate" else "0010_dedup_keys")])
    old, tail = sdk_event(), sdk_event()
    anon_id = old["user"]["anon_id"]
    with connection.cursor() as cursor:
        cursor.execute(
            OLD_EVENTS_SQL,
            [application.company_id, application.id],
        )
        cursor.execute(SDK_ROW_SQL, [application.company_id, application.id, old["event_id"], anon_id])
        cursor.execute(
            "INSERT INTO ingest_identifylink (company_id, application_id, received_at, export_state,"
            " export_attempts, export_error, webhook_pending, link_id, anon_id, user_id, last_seen_at)"
            " VALUES (%s, %s, now(), 0, 0, '', false, gen_random_uuid(), %s, 'user-1', now())",
            [application.company_id, application.id, anon_id],
        )
        cursor.execute("SELECT max(id) FROM ingest_event")
        (last_id,) = cursor.fetchone()
    if procedure == "large-table steps":
        call_command("ingest_dedup_backfill", stdout=io.StringIO())
        assert SdkEventKey.objects.count() == 1
        with connection.cursor() as cursor:
            cursor.execute(SDK_ROW_SQL, [application.company_id, application.id, tail["event_id"], anon_id])
            for table in TABLES:
                # 2**40 on a real database (README); here the end of the block the sequence is in,
                # which earlier tests moved
                cursor.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id'))", [table])
                bound = ((cursor.fetchone()[0] or 0) // BLOCK + 1) * BLOCK
                cursor.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {table}_partition_bound CHECK (id < {bound}) NOT VALID"
                )
                cursor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {table}_partition_bound")
    else:
        with connection.cursor() as cursor:
            cursor.execute(SDK_ROW_SQL, [application.company_id, application.id, tail["event_id"], anon_id])

    # When the migration runs
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    # Then the rows are in partition 0 of the partitioned tables, and the next block is ready
    assert {partition_of(Event, pk) for pk in Event.objects.values_list("id", flat=True)} == {"ingest_event_p0"}
    assert Event.objects.count() == 5
    for table in TABLES:
        assert f"{table}_p0" in attached(table)
        assert len(attached(table)) == 2
    # and a retry of the old SDK events and a repeat of the old link store nothing
    post_events(api_client, sdk_key, [old, tail, sdk_event()])
    assert SdkEvent.objects.filter(event_id=old["event_id"]).count() == 1
    assert SdkEvent.objects.filter(event_id=tail["event_id"]).count() == 1
    assert SdkEvent.objects.count() == 3
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%%partition_bound'")
        assert cursor.fetchone()[0] == 0
    assert identify(api_client, sdk_key, anon_id, "user-1").json()["created"] is False
    assert IdentifyLink.objects.count() == 1
    # and new /v1 events continue the id sequence; the first maintenance run moves them to a new week
    new = EventFactory(application=application)
    assert new.id > last_id
    assert RawPartition.objects.get(table="ingest_event", number=0).opened_at is None  # its span is unknown
    current = partitions_maintain()
    assert partition_of(Event, EventFactory(application=application).id) == f"ingest_event_p{current['ingest_event']}"
    assert current["ingest_event"] >= 1
