"""The exporter against the BigQuery emulator: what lands, once, with every field right."""

import datetime as dt
import uuid

import pytest
from django.db import connection

from ingest.bigquery import TABLES
from ingest.bigquery import client_get as bigquery_client_get
from ingest.models import Event, ExportBatch, ExportState, IdentifyLink, SdkEvent
from ingest.services import export as export_service
from ingest.services.export import export_drain, export_retry_dead, export_status_get
from tests.export_ledger import in_state, state_of, states
from tests.factories import ApplicationFactory, EventFactory, IdentifyLinkFactory, SdkEventFactory

pytestmark = [pytest.mark.bigquery, pytest.mark.django_db]

T0 = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)


def test_rows_of_all_three_tables_land_once_with_every_field(bigquery):
    # Given one stored row of each kind
    app = ApplicationFactory()
    event = EventFactory(
        application=app,
        event="feature_used",
        customer_org_id="org_42",
        path="/settings/billing",
        session_inferred=True,
        plan="pro",
        environment="staging",
        occurred_at=T0,
        properties={"feature": "export", "n": 3, "nested": {"ok": True}},
    )
    sdk = SdkEventFactory(
        application=app,
        event_name="paywall_shown",
        ts_ms=int(T0.timestamp() * 1000),
        occurred_at=T0,
        user_id="u-7",
        platform="android",
        os="14",
        app_version="2.3.4",
        sdk_version="1.2.0",
        locale="de_DE",
        bundle_version=7.5,
        country="DE",
        properties={"price": 9.99},
    )
    link = IdentifyLinkFactory(application=app, user_id="u-7", last_seen_at=T0)

    # When the exporter runs
    report = export_drain()

    # Then BigQuery has each row once, field by field as stored
    assert (report.exported, report.dead) == (3, 0)
    [got] = bigquery.query("SELECT * FROM {events}")
    assert got == {
        "event_id": str(event.event_id),
        "company_id": app.company_id,
        "app_uuid": str(app.uuid),
        "event": "feature_used",
        "user_hash": event.user_hash,
        "customer_org_id": "org_42",
        "path": "/settings/billing",
        "session_id": str(event.session_id),
        "session_inferred": True,
        "plan": "pro",
        "environment": "staging",
        "occurred_at": T0,
        "properties": got["properties"],
        "received_at": event.received_at,
        "export_batch": got["export_batch"],
    }
    assert got["properties"] == {"feature": "export", "n": 3, "nested": {"ok": True}}
    [got] = bigquery.query("SELECT * FROM {sdk_events}")
    assert got == {
        "event_id": str(sdk.event_id),
        "company_id": app.company_id,
        "app_uuid": str(app.uuid),
        "schema_version": 1,
        "event_name": "paywall_shown",
        "ts_ms": sdk.ts_ms,
        "occurred_at": T0,
        "anon_id": str(sdk.anon_id),
        "user_id": "u-7",
        "platform": "android",
        "os": "14",
        "app_version": "2.3.4",
        "sdk_version": "1.2.0",
        "locale": "de_DE",
        "bundle_version": 7.5,
        "country": "DE",
        "session_id": str(sdk.session_id),
        "properties": {"price": 9.99},
        "consent_analytics": True,
        "received_at": sdk.received_at,
        "export_batch": got["export_batch"],
    }
    [got] = bigquery.query("SELECT * FROM {identify_links}")
    assert got == {
        "link_id": str(link.link_id),
        "company_id": app.company_id,
        "app_uuid": str(app.uuid),
        "anon_id": str(link.anon_id),
        "user_id": "u-7",
        "last_seen_at": T0,
        "received_at": link.received_at,
        "export_batch": got["export_batch"],
    }
    # And locally every row is marked exported and no batch is left open
    for model in (Event, SdkEvent, IdentifyLink):
        assert states(model) == {ExportState.EXPORTED: 1}
    assert not ExportBatch.objects.exists()

    # And a second run sends nothing again
    assert export_drain().claimed == 0
    assert bigquery.count("events") == 1


def test_many_rows_land_in_chunks_exactly_once(bigquery, settings):
    # Given more rows than several chunks
    settings.EXPORT_BATCH_SIZE = 50
    app = ApplicationFactory()
    EventFactory.create_batch(180, application=app)
    SdkEventFactory.create_batch(120, application=app)

    # When the exporter drains
    report = export_drain()

    # Then each row is in BigQuery exactly once
    assert report.exported == 300
    rows = bigquery.query("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM {events}")
    assert rows == [{"n": 180, "d": 180}]
    rows = bigquery.query("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM {sdk_events}")
    assert rows == [{"n": 120, "d": 120}]
    assert set(states(Event)) == {ExportState.EXPORTED}


def test_events_without_consent_never_land(bigquery):
    # Given consented and unconsented SDK events (ingest marks the latter SKIPPED)
    app = ApplicationFactory()
    yes = SdkEventFactory(application=app)
    SdkEventFactory(application=app, consent_analytics=False, export_state=ExportState.SKIPPED)
    # even one wrongly left pending
    SdkEventFactory(application=app, consent_analytics=False)

    # When the exporter runs
    export_drain()

    # Then only the consented event is in BigQuery; the others were never touched
    assert bigquery.query("SELECT event_id FROM {sdk_events}") == [{"event_id": str(yes.event_id)}]
    assert SdkEvent.objects.filter(consent_analytics=False, export_attempts=0).count() == 2
    assert not in_state(SdkEvent, ExportState.EXPORTED).filter(consent_analytics=False).exists()


def test_without_bigquery_configured_rows_stay_pending(db, settings):
    # Given no BigQuery project (the embedded default) and a stored event
    settings.BIGQUERY_PROJECT = ""
    event = EventFactory()

    # When the exporter runs
    report = export_drain()

    # Then nothing happens and nothing errors
    assert report.claimed == 0
    assert state_of(event) == ExportState.PENDING


def _make_unexportable(event: Event) -> None:
    """A timestamp PostgreSQL stores but BigQuery rejects (beyond 9999-12-31): a row that slipped in."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingest_event SET occurred_at = '10000-01-01T00:00:00Z' WHERE id = %s",
            [event.id],
        )


def test_a_permanently_bad_row_is_dead_lettered_and_its_chunk_lands(bigquery):
    # Given a chunk of 20 events, one of which BigQuery rejects
    app = ApplicationFactory()
    events = EventFactory.create_batch(20, application=app)
    bad = events[13]
    _make_unexportable(bad)

    # When the exporter runs
    report = export_drain()

    # Then the 19 others land once, the bad one is dead-lettered with the reason
    assert (report.exported, report.dead) == (19, 1)
    landed = {r["event_id"] for r in bigquery.query("SELECT event_id FROM {events}")}
    assert landed == {str(e.event_id) for e in events} - {str(bad.event_id)}
    assert bigquery.count("events") == 19
    state, error, attempts = Event.objects.filter(id=bad.id).values_list(
        "export_state", "export_error", "export_attempts"
    )[0]
    assert state == ExportState.DEAD
    assert "500" in error or "Internal" in error
    assert attempts == 1
    # And the dead letter shows in the status the admin and the sweeper report
    assert export_status_get().dead_count == 1

    # And rows behind it keep flowing
    later = EventFactory(application=app)
    export_drain()
    landed = [r["event_id"] for r in bigquery.query("SELECT event_id FROM {events}")]
    assert landed.count(str(later.event_id)) == 1

    # And once fixed and retried from the admin, it lands too, once
    Event.objects.filter(id=bad.id).update(occurred_at=T0)
    assert export_retry_dead(model=Event, ids=[bad.id]) == 1
    export_drain()
    assert bigquery.count("events") == 21
    assert state_of(bad) == ExportState.EXPORTED


def test_export_lag_is_the_age_of_the_oldest_pending_row(db, settings):
    settings.BIGQUERY_PROJECT = ""
    now = dt.datetime.now(dt.UTC)
    EventFactory(received_at=now - dt.timedelta(seconds=90))
    SdkEventFactory(received_at=now - dt.timedelta(seconds=30))
    status = export_status_get(now=now)
    assert status.lag_seconds == pytest.approx(90, abs=1)
    assert status.dead_count == 0


def test_export_lag_counts_rows_in_flight(db, settings):
    # Given the oldest row owed is being sent (SENDING for 90 s), the newer ones pending
    settings.BIGQUERY_PROJECT = "acme-analytics"
    now = dt.datetime.now(dt.UTC)
    EventFactory.create_batch(30, received_at=now - dt.timedelta(seconds=90), export_state=ExportState.SENDING)
    SdkEventFactory(received_at=now - dt.timedelta(seconds=5))
    EventFactory(received_at=now - dt.timedelta(hours=2), export_state=ExportState.EXPORTED)

    # When the status is read
    status = export_status_get(now=now)

    # Then the lag is the age of the oldest row not yet exported, and the backlog counts both kinds
    assert status.enabled
    assert status.lag_seconds == pytest.approx(90, abs=1)
    assert (status.pending_count, status.sending_count) == (1, 30)


def test_uuid_of_export_batch_is_stored_on_both_sides(bigquery):
    # Given a row claimed and sent by a worker that died before settling (its batch still held)
    event = EventFactory()
    chunk = export_service._claim(TABLES["events"], 10, deadline=0.0)
    assert chunk is not None
    export_service._deliver(bigquery_client_get(), chunk, chunk.rows)
    batch = ExportBatch.objects.get()
    assert batch.ids == [event.id]
    # Then the batch id in BigQuery is the one recorded locally (how recovery finds a batch)
    [row] = bigquery.query("SELECT export_batch FROM {events}")
    assert uuid.UUID(row["export_batch"]) == batch.id
