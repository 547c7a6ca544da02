"""`manage.py export_replay`: refill a BigQuery rebuilt from scratch, against the emulator (issue 17, 6)."""

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from ingest.models import Event, ExportState
from ingest.services.export import export_drain
from tests.export_ledger import in_state
from tests.factories import ApplicationFactory, EventFactory, IdentifyLinkFactory, SdkEventFactory

pytestmark = pytest.mark.bigquery


def _replay(*args: str) -> str:
    out = StringIO()
    call_command("export_replay", *args, stdout=out)
    return out.getvalue()


def _rebuild(bigquery) -> None:
    """BigQuery loses everything (an in-memory restart) and is set up again, empty."""
    bigquery.emulator.stop()
    bigquery.emulator.start()
    bigquery.setup()


@pytest.mark.django_db
def test_replay_refills_a_rebuilt_sink_with_the_range_exactly_once(bigquery):
    # Given events exported yesterday, today and just now, one still pending, one dead
    app = ApplicationFactory()
    now = timezone.now()
    EventFactory.create_batch(3, application=app, received_at=now - dt.timedelta(days=1))
    today = EventFactory.create_batch(5, application=app, received_at=now - dt.timedelta(hours=1))
    SdkEventFactory.create_batch(2, application=app, received_at=now - dt.timedelta(hours=1))
    export_drain()
    EventFactory(application=app, received_at=now - dt.timedelta(hours=1))  # pending: the export sends it
    EventFactory(application=app, received_at=now - dt.timedelta(hours=1), export_state=ExportState.DEAD)
    assert bigquery.count("events") == 8

    # When BigQuery is rebuilt from scratch, and today's range is replayed
    _rebuild(bigquery)
    since = (now - dt.timedelta(hours=2)).isoformat()
    until = now.isoformat()
    out = _replay("--table", "events", "--since", since, "--until", until)

    # Then the count comes first, then progress, and exactly today's exported events are back, once
    lines = out.splitlines()
    assert lines[0].startswith("5 exported rows of events received in [")
    assert "sent 5/5 (100 %)" in out
    assert lines[-1].startswith("done: 5 rows sent to test-proj.")
    rows = bigquery.query("SELECT event_id, export_batch FROM {events}")
    assert sorted(r["event_id"] for r in rows) == sorted(str(e.event_id) for e in today)
    assert {r["export_batch"] for r in rows} == {lines[0].split("export_batch = '")[1].rstrip("'")}
    assert bigquery.count("sdk_events") == 0  # one table per run
    # and PostgreSQL is untouched: the pending row is still the exporter's, nothing else changed
    assert in_state(Event, ExportState.PENDING).count() == 1
    assert bigquery.count("events") == 5


@pytest.mark.django_db
def test_dry_run_counts_and_sends_nothing(bigquery):
    app = ApplicationFactory()
    IdentifyLinkFactory.create_batch(4, application=app)
    export_drain()
    _rebuild(bigquery)

    out = _replay(
        "--table",
        "identify_links",
        "--since",
        "2000-01-01",
        "--until",
        (timezone.now() + dt.timedelta(minutes=1)).isoformat(),
        "--dry-run",
    )

    assert out.splitlines()[0].startswith("4 exported rows of identify_links received in [2000-01-01T00:00:00+00:00")
    assert "would send them to" in out
    assert out.splitlines()[-1] == "dry run: nothing sent"
    assert bigquery.count("identify_links") == 0


@pytest.mark.django_db
def test_replay_in_many_chunks_reports_progress_per_chunk(bigquery, settings):
    settings.EXPORT_BATCH_SIZE = 10
    app = ApplicationFactory()
    events = SdkEventFactory.create_batch(25, application=app)
    export_drain()
    _rebuild(bigquery)

    out = _replay("--table", "sdk_events", "--since", "2000-01-01", "--until", "2100-01-01")

    assert [line for line in out.splitlines() if line.startswith("sent ")] == [
        "sent 10/25 (40 %)",
        "sent 20/25 (80 %)",
        "sent 25/25 (100 %)",
    ]
    rows = bigquery.query("SELECT event_id, COUNT(*) AS n FROM {sdk_events} GROUP BY event_id")
    assert {r["event_id"]: r["n"] for r in rows} == {str(e.event_id): 1 for e in events}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday", "--until", "2026-01-01"], "--since: 'yesterday' is not an ISO 8601"),
        (["--since", "2026-01-02", "--until", "2026-01-01"], "--until must be later than --since"),
    ],
)
def test_bad_ranges_are_refused_with_the_argument_named(bigquery, args, message):
    with pytest.raises(CommandError, match=message):
        _replay("--table", "events", *args)


@pytest.mark.django_db
def test_replay_with_bigquery_down_stops_and_says_how_to_start_over(bigquery):
    EventFactory.create_batch(3)
    export_drain()
    bigquery.emulator.stop()
    try:
        with pytest.raises(CommandError, match=r"To start over: DELETE FROM .* WHERE export_batch = 'replay-"):
            _replay("--table", "events", "--since", "2000-01-01", "--until", "2100-01-01")
    finally:
        bigquery.emulator.start()
