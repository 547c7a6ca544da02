"""The export's bookkeeping lives in the ledger: stored rows are written once, none is ever skipped.

- Exporting a row does not rewrite it (same tuple before and after: no UPDATE, no dead tuple).
- A row whose id was drawn before a higher one, but committed after it, is still exported: the
  cursor never passes an id a running transaction may still commit.
- Rows stored before the ledger keep their meaning across its migration.
"""

import uuid

import psycopg
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from ingest.models import Event, ExportBatch, ExportState, SdkEvent
from ingest.services.export import export_drain, export_status_get
from tests.export_ledger import states
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory

pytestmark = pytest.mark.bigquery


def _versions(table: str) -> dict[int, tuple[str, str]]:
    """Each row's physical version (ctid, inserting transaction): an UPDATE changes both."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, ctid::text, xmin::text FROM {table}")  # noqa: S608 (a table name from code)
        return {pk: (ctid, xmin) for pk, ctid, xmin in cursor.fetchall()}


@pytest.mark.django_db
def test_exporting_never_rewrites_a_stored_row(bigquery):
    # Given stored events, SDK events, and one row BigQuery will reject
    app = ApplicationFactory()
    EventFactory.create_batch(30, application=app)
    SdkEventFactory.create_batch(20, application=app)
    bad = EventFactory(application=app)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ingest_event SET occurred_at = '10000-01-01T00:00:00Z' WHERE id = %s", [bad.id])
    before = {table: _versions(table) for table in ("ingest_event", "ingest_sdkevent")}

    # When they are exported
    report = export_drain()

    # Then every good row landed and none was rewritten; only the dead letter was (with its reason)
    assert (report.exported, report.dead) == (50, 1)
    assert bigquery.count("events") + bigquery.count("sdk_events") == 50
    after = {table: _versions(table) for table in ("ingest_event", "ingest_sdkevent")}
    assert after["ingest_sdkevent"] == before["ingest_sdkevent"]
    changed = {pk for pk, version in after["ingest_event"].items() if before["ingest_event"][pk] != version}
    assert changed == {bad.id}
    assert states(Event) == {ExportState.EXPORTED: 30, ExportState.DEAD: 1}
    assert states(SdkEvent) == {ExportState.EXPORTED: 20}


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_after_a_higher_id_is_still_exported(bigquery):
    # Given a transaction that drew an event id and has not committed yet,
    app = ApplicationFactory()
    late_id = uuid.uuid4()
    with psycopg.connect(_database_url()) as late:
        late.execute(
            "INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts,"
            " export_error, webhook_pending, event_id, event, user_hash, customer_org_id, session_id,"
            " session_inferred, occurred_at) VALUES (%s, %s, now(), 0, 0, '', false, %s, 'late', 'h', 'o',"
            " gen_random_uuid(), false, now())",
            [app.company_id, app.id, late_id],
        )
        # and a later event (a higher id) committed meanwhile and exported
        early = EventFactory(application=app)
        export_drain()
        landed = {r["event_id"] for r in bigquery.query("SELECT event_id FROM {events}")}
        assert str(late_id) not in landed
        # When the first transaction commits and export runs again
        late.commit()
    export_drain()
    export_drain()  # the horizon noted by the previous claim is complete now

    # Then both events are in BigQuery exactly once: the cursor did not pass the id in flight
    rows = bigquery.query("SELECT event_id, COUNT(*) AS n FROM {events} GROUP BY event_id")
    assert {r["event_id"]: r["n"] for r in rows} == {str(early.event_id): 1, str(late_id): 1}
    assert states(Event) == {ExportState.EXPORTED: 2}
    assert export_status_get().pending_count == 0


LEGACY_ROWS_SQL = """
INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_batch, export_attempts,
    export_error, webhook_pending, event_id, event, user_hash, customer_org_id, session_id, session_inferred,
    occurred_at)
SELECT %s, %s, now(), s.state, CASE WHEN s.state = 4 THEN %s::uuid END, 1, '', false, gen_random_uuid(),
    'legacy', 'h', 'o', gen_random_uuid(), false, now()
FROM unnest(ARRAY[1, 1, 4, 4, 0, 1, 2, 0, 1]) WITH ORDINALITY AS s(state, n) ORDER BY s.n
"""


@pytest.mark.django_db(transaction=True)
def test_rows_stored_before_the_ledger_keep_their_meaning():
    # Given the schema before the ledger, with rows exported, being sent (a batch in flight), dead and
    # pending, in mixed id order
    app = ApplicationFactory()
    executor = MigrationExecutor(connection)
    executor.migrate([("ingest", "0008_drop_fold_pending")])
    batch_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(LEGACY_ROWS_SQL, [app.company_id, app.id, batch_id])
        cursor.execute(
            'INSERT INTO ingest_exportbatch (id, "table", row_count, claimed_at, lease_until)'
            " VALUES (%s, 'events', 2, now(), now() + interval '3 minutes')",
            [batch_id],
        )
        cursor.execute("SELECT id, export_state FROM ingest_event ORDER BY id")
        stored = cursor.fetchall()

    # When the ledger's migration runs
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # every app: later ones depend on ingest

    # Then each row's export state is what it was
    assert states(Event) == {
        ExportState.EXPORTED: 4,
        ExportState.SENDING: 2,
        ExportState.PENDING: 2,
        ExportState.DEAD: 1,
    }
    sending = sorted(pk for pk, state in stored if state == ExportState.SENDING)
    assert ExportBatch.objects.get(id=batch_id).ids == sending
    # and new rows are pending after them
    EventFactory(application=app)
    assert states(Event)[ExportState.PENDING] == 3
    assert export_status_get(now=timezone.now()).sending_count == 2
