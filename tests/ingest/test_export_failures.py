"""Exactly once whatever fails: BigQuery down, a hung call, a worker killed mid-export, two exporters."""

import datetime as dt
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone

from ingest.models import Event, ExportBatch, ExportState, SdkEvent
from ingest.services.export import export_drain, exports_recover, lease_seconds
from tests import export_ledger
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory

pytestmark = pytest.mark.bigquery

REPO = Path(__file__).resolve().parents[2]


def _states(model) -> dict[int, int]:
    return export_ledger.states(model)


def _landed_once(bigquery, table: str, expected_ids) -> None:
    rows = bigquery.query(f"SELECT event_id, COUNT(*) AS n FROM {{{table}}} GROUP BY event_id")  # noqa: S608
    assert {r["event_id"]: r["n"] for r in rows} == {str(i): 1 for i in expected_ids}


@contextmanager
def black_hole():
    """An endpoint that accepts connections and never answers: a hung BigQuery call."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.mark.django_db
def test_bigquery_down_rows_stay_pending_then_land_once_after_restart(bigquery):
    # Given BigQuery is down while events keep arriving
    app = ApplicationFactory()
    first = EventFactory.create_batch(5, application=app)
    bigquery.emulator.stop()
    during = EventFactory.create_batch(5, application=app) + SdkEventFactory.create_batch(3, application=app)

    # When the exporter runs (twice, as retries would)
    reports = [export_drain(), export_drain()]

    # Then nothing errors, the exporter reports it must back off, and every row is still pending
    assert all(r.unavailable for r in reports)
    assert _states(Event) == {ExportState.PENDING: 10}
    assert _states(SdkEvent) == {ExportState.PENDING: 3}
    assert not ExportBatch.objects.exists()

    # When BigQuery is back (an in-memory restart: the tables are set up again) and export resumes
    bigquery.emulator.start()
    bigquery.setup()
    export_drain()

    # Then every row landed exactly once
    _landed_once(bigquery, "events", [e.event_id for e in first + during if isinstance(e, Event)])
    _landed_once(bigquery, "sdk_events", [e.event_id for e in during if isinstance(e, SdkEvent)])
    assert _states(Event) == {ExportState.EXPORTED: 10}


@pytest.mark.django_db
def test_a_hung_call_is_left_to_lease_recovery_and_lands_once(bigquery, settings):
    # Given events and a BigQuery that accepts the call but never answers
    events = EventFactory.create_batch(7)
    real_endpoint = settings.BIGQUERY_API_ENDPOINT
    with black_hole() as endpoint:
        settings.BIGQUERY_API_ENDPOINT = endpoint
        settings.BIGQUERY_TIMEOUT_SECONDS = 1.0
        # When the exporter runs
        report = export_drain()
    # Then it cannot know whether the rows landed: they stay claimed, under a lease
    assert report.unresolved == 7
    assert _states(Event) == {ExportState.SENDING: 7}
    batch = ExportBatch.objects.get()

    # When BigQuery is reachable again but the lease has not run out, nothing is resent
    settings.BIGQUERY_API_ENDPOINT = real_endpoint
    assert export_drain().claimed == 0
    assert exports_recover().claimed == 0
    assert bigquery.count("events") == 0

    # When the lease runs out, recovery asks BigQuery (nothing landed) and requeues; export resumes
    recovered = exports_recover(now=batch.lease_until + dt.timedelta(seconds=1))
    assert (recovered.exported, recovered.requeued) == (0, 7)
    export_drain()

    # Then every row landed exactly once
    _landed_once(bigquery, "events", [e.event_id for e in events])
    assert _states(Event) == {ExportState.EXPORTED: 7}
    assert not ExportBatch.objects.exists()


STALL_SETTLE_SQL = """
CREATE OR REPLACE FUNCTION export_test_stall() RETURNS trigger AS $$
BEGIN PERFORM pg_sleep(600); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER export_test_stall BEFORE UPDATE OR DELETE ON ingest_exportbatch FOR EACH ROW
EXECUTE FUNCTION export_test_stall();
"""
UNSTALL_SQL = (
    "DROP TRIGGER IF EXISTS export_test_stall ON ingest_exportbatch; DROP FUNCTION IF EXISTS export_test_stall();"
)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _start_worker(bigquery, env_overrides: dict[str, str], log_path: Path) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TEST_CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        **bigquery.env(),
        **env_overrides,
    }
    return subprocess.Popen(  # noqa: S603 (our venv's celery, fixed arguments)
        [
            str(REPO / ".venv" / "bin" / "celery"),
            "-A",
            "saastracker",
            "worker",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "info",
        ],
        cwd=REPO,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _sleeping_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("when", ["after_insert_before_commit", "during_insert"])
def test_a_worker_killed_mid_export_still_exports_exactly_once(bigquery, tmp_path, when):
    """A real `celery worker` is SIGKILLed in the middle of an export, then the sweeper recovers.

    after_insert_before_commit: BigQuery has the rows, the final commit never happens (the
    database stalls that commit through a test trigger, so the kill lands in that window).
    during_insert: the worker dies while its insert call hangs (BigQuery never answers).
    """
    from saastracker.celery import app as celery_app

    # Given stored events
    events = EventFactory.create_batch(40, application=ApplicationFactory())
    with ExitStack() as stack:
        overrides = {}
        if when == "after_insert_before_commit":
            with connection.cursor() as cursor:
                cursor.execute(STALL_SETTLE_SQL)
        else:
            overrides = {"BIGQUERY_API_ENDPOINT": stack.enter_context(black_hole()), "BIGQUERY_TIMEOUT_SECONDS": "300"}
        worker = _start_worker(bigquery, overrides, tmp_path / "worker.log")
        try:
            # When a worker takes the export task
            celery_app.send_task("ingest.export_pending", kwargs={"fanout": False})
            _wait_for(lambda: ExportBatch.objects.exists(), 60, "the worker to claim a batch")
            if when == "after_insert_before_commit":
                _wait_for(lambda: bigquery.count("events") == 40, 30, "the rows to reach BigQuery")
                _wait_for(lambda: _sleeping_backends(), 30, "the final commit to start")
            else:
                time.sleep(1.0)  # the insert call is in flight
            # and is killed before it can mark anything
            _kill(worker)
        finally:
            if worker.poll() is None:
                _kill(worker)
            with connection.cursor() as cursor:
                for pid in _sleeping_backends():  # the dead worker's session, as TCP keepalive would end it
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                cursor.execute(UNSTALL_SQL)

    # Then the rows are still claimed by the dead worker's batch, and nothing resends them early
    _wait_for(lambda: _states(Event) == {ExportState.SENDING: 40}, 10, "the dead session's rollback")
    assert export_drain().claimed == 0
    landed_before = bigquery.count("events")
    assert landed_before == (40 if when == "after_insert_before_commit" else 0)

    # When the lease has run out and the sweeper recovers
    report = exports_recover(now=timezone.now() + dt.timedelta(seconds=lease_seconds() + 1))
    export_drain()

    # Then every event is in BigQuery exactly once
    assert report.exported == landed_before
    _landed_once(bigquery, "events", [e.event_id for e in events])
    assert _states(Event) == {ExportState.EXPORTED: 40}
    assert not ExportBatch.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_several_exporters_at_once_export_exactly_once(bigquery, settings):
    # Given a backlog across two tables and small chunks, so exporters interleave
    settings.EXPORT_BATCH_SIZE = 40
    app = ApplicationFactory()
    events = EventFactory.create_batch(600, application=app)
    sdk_events = SdkEventFactory.create_batch(300, application=app)

    # When four exporters, each on its own database connection, drain at the same time
    reports = []
    errors = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            start.wait()
            reports.append(export_drain())
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then every row landed exactly once, and the work was actually shared
    assert errors == []
    assert sum(r.exported for r in reports) == 900
    assert sum(1 for r in reports if r.exported) >= 2
    _landed_once(bigquery, "events", [e.event_id for e in events])
    _landed_once(bigquery, "sdk_events", [e.event_id for e in sdk_events])
    assert _states(Event) == {ExportState.EXPORTED: 600}


@pytest.mark.django_db
def test_the_sweeper_logs_lag_and_backlog_and_recovery_settles_expired_batches(bigquery, settings, caplog):
    from ingest.tasks import export_recover, export_sweep

    # Given a batch abandoned mid-call whose lease has run out, and a dead letter
    events = EventFactory.create_batch(3, received_at=timezone.now() - dt.timedelta(seconds=60))
    EventFactory(export_state=ExportState.DEAD, export_error="invalid")
    real_endpoint = settings.BIGQUERY_API_ENDPOINT
    with black_hole() as endpoint:
        settings.BIGQUERY_API_ENDPOINT = endpoint
        settings.BIGQUERY_TIMEOUT_SECONDS = 1.0
        export_drain()
    settings.BIGQUERY_API_ENDPOINT = real_endpoint
    ExportBatch.objects.update(lease_until=timezone.now() - dt.timedelta(seconds=1))

    # When the periodic sweep runs (it reads PostgreSQL only)
    with caplog.at_level("INFO", logger="ingest.tasks"):
        result = export_sweep.apply().get()

    # Then lag, backlog and dead letters are logged, the rows in flight counting towards the lag
    assert result["sending"] == 3
    assert result["dead"] == 1
    assert result["lag_seconds"] == pytest.approx(60, abs=5)
    assert "export status: on lag=6" in caplog.text
    assert "sending=3 dead=1" in caplog.text
    assert "expired_batches=1" in caplog.text

    # When recovery runs (the sweep published it to the export queue): nothing had landed, back to pending
    recovered = export_recover.apply().get()
    assert recovered["requeued"] == 3
    assert _states(Event) == {ExportState.PENDING: 3, ExportState.DEAD: 1}
    assert not ExportBatch.objects.exists()
    # and the kicked export then lands them once
    export_drain()
    _landed_once(bigquery, "events", [e.event_id for e in events])


@pytest.mark.django_db
def test_bigquery_back_without_its_dataset_rows_land_once_without_setup(bigquery):
    # Given rows stored while BigQuery was down
    app = ApplicationFactory()
    bigquery.emulator.stop()
    events = EventFactory.create_batch(5, application=app)
    sdk_events = SdkEventFactory.create_batch(3, application=app)
    assert export_drain().unavailable

    # When BigQuery comes back empty (an in-memory restart: no dataset, no tables) and nobody
    # runs bigquery_setup, and the exporter runs
    bigquery.emulator.start()
    report = export_drain()

    # Then the "not found" answer made it create the tables, and every row landed exactly once
    assert not report.back_off
    _landed_once(bigquery, "events", [e.event_id for e in events])
    _landed_once(bigquery, "sdk_events", [e.event_id for e in sdk_events])
    assert _states(Event) == {ExportState.EXPORTED: 5}
    assert not ExportBatch.objects.exists()


@pytest.mark.django_db
def test_recovery_of_a_batch_whose_table_vanished_puts_rows_back_and_they_land(bigquery, settings):
    # Given a batch abandoned mid-call, then BigQuery restarted empty, and the lease ran out
    events = EventFactory.create_batch(3)
    real_endpoint = settings.BIGQUERY_API_ENDPOINT
    with black_hole() as endpoint:
        settings.BIGQUERY_API_ENDPOINT = endpoint
        settings.BIGQUERY_TIMEOUT_SECONDS = 1.0
        export_drain()
    settings.BIGQUERY_API_ENDPOINT = real_endpoint
    settings.BIGQUERY_TIMEOUT_SECONDS = 10.0
    bigquery.emulator.stop()
    bigquery.emulator.start()
    batch = ExportBatch.objects.get()

    # When recovery asks which rows of the batch landed: the table does not exist, so none did
    recovered = exports_recover(now=batch.lease_until + dt.timedelta(seconds=1))

    # Then they are pending again (not stuck SENDING forever), and the next export lands them once
    assert (recovered.exported, recovered.requeued) == (0, 3)
    export_drain()
    _landed_once(bigquery, "events", [e.event_id for e in events])
    assert _states(Event) == {ExportState.EXPORTED: 3}
