"""Each stored event is counted exactly once: a re-run, several folders, a SIGKILLed worker, a database restart.

What "counted once" means here: the rollups' event totals equal the number of stored rows, each
day's distinct users equal the distinct users of the rows, usage equals the rows, and no row is
left pending.
"""

# ruff: noqa: S603, S607 - fixed binaries (celery, PostgreSQL) with arguments built here, never input

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from analytics.fold import fold_drain, unfolded_count, unfolded_sql
from analytics.models import DailyTotal
from apps_registry.models import Usage
from ingest.models import Event
from tests.factories import ApplicationFactory, EventFactory
from tests.raw_rows import OLD_EVENTS_SQL

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DAY0 = datetime(2026, 11, 2, 12, tzinfo=UTC)


def _store(app, n: int, *, users: int = 37, days: int = 3, per_insert: int | None = None) -> None:
    """`n` events over `days` days and `users` users, in INSERTs of `per_insert` (as ingest writes them)."""
    Event.objects.bulk_create(
        (
            EventFactory.build(
                application=app,
                company=app.company,
                user_hash=f"user-{i % users}-".ljust(64, "x"),
                customer_org_id=f"org-{i % 5}",
                occurred_at=DAY0 + timedelta(days=i % days),
            )
            for i in range(n)
        ),
        batch_size=per_insert,
    )


def _assert_counted_once(app, n: int, *, users: int = 37, days: int = 3) -> None:
    assert unfolded_count() == 0
    totals = DailyTotal.objects.filter(application=app, environment="*", source="events").order_by("day")
    assert sum(t.events for t in totals) == n
    per_day_users = [min(users, len({i % users for i in range(n) if i % days == d})) for d in range(days)]
    assert [t.users for t in totals] == per_day_users
    assert [t.orgs for t in totals] == [5] * days
    assert Usage.objects.get(company=app.company).event_count == n


@pytest.mark.django_db
def test_a_rerun_counts_nothing_twice():
    app = ApplicationFactory()
    _store(app, 300)

    first = fold_drain(chunk_size=50)
    second = fold_drain(chunk_size=50)

    assert (first.claimed, second.claimed) == (300, 0)
    _assert_counted_once(app, 300)


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_after_a_higher_id_is_still_folded_once():
    # Given a transaction that stored an event (drew its id) and has not committed yet,
    app = ApplicationFactory()
    with psycopg.connect(_database_url()) as late:
        late.execute(
            "INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts,"
            " export_error, webhook_pending, event_id, event, user_hash, customer_org_id, session_id,"
            " session_inferred, occurred_at) VALUES (%s, %s, now(), 0, 0, '', false, gen_random_uuid(), 'late',"
            " 'late-user', 'o', gen_random_uuid(), false, now())",
            [app.company_id, app.id],
        )
        # and a later event (a higher id) committed meanwhile,
        EventFactory(application=app, event="early", user_hash="early-user", occurred_at=timezone.now())
        fold_drain()
        # the fold waits at the id still in flight (a cursor that passed it would skip it for ever)
        assert _total_events(app) == 0
        assert unfolded_count() == 1  # the committed one; the other is visible to no one yet
        # When the first transaction commits and the fold runs again
        late.commit()
    fold_drain()

    # Then both events are counted, each once: the fold's cursor did not pass the id in flight
    assert _total_events(app) == 2
    assert unfolded_count() == 0
    assert Usage.objects.get(company=app.company).event_count == 2


@pytest.mark.django_db(transaction=True)
def test_rows_queued_by_the_old_trigger_are_folded_once_after_the_upgrade():
    # Given the schema with the queue trigger (before the fold cursor) and events it queued
    app = ApplicationFactory()
    executor = MigrationExecutor(connection)
    executor.migrate([("analytics", "0006_health_model_history")])
    with connection.cursor() as cursor:
        cursor.execute(
            OLD_EVENTS_SQL,
            [app.company_id, app.id],
        )
        cursor.execute("SELECT coalesce(sum(cardinality(event_ids)), 0) FROM analytics_foldqueue")
        assert cursor.fetchone()[0] == 5

    # When the upgrade runs and more events are stored after it
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    for _ in range(3):
        EventFactory(application=app, occurred_at=timezone.now())
    fold_drain()

    # Then every event is counted once: the queued ones and the ones past the new cursor
    assert _total_events(app) == 8
    assert unfolded_count() == 0


def _total_events(app) -> int:
    return sum(DailyTotal.objects.filter(application=app, environment="*").values_list("events", flat=True))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_several_folders_at_once_count_each_event_once():
    # Given a backlog stored by many INSERTs (one queue row each), and small chunks so that four
    # folders interleave on the same days and users
    app = ApplicationFactory()
    _store(app, 4000, per_insert=50)

    reports, errors = [], []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            start.wait()
            reports.append(fold_drain(chunk_size=100))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    # Then the work was shared and every event counted once, distinct users included
    assert errors == []
    assert sum(r.claimed for r in reports) == 4000
    assert sum(1 for r in reports if r.claimed) >= 2
    _assert_counted_once(app, 4000)


# n events of one app in one INSERT, as a batch or a group commit stores them.
INSERT_N_SQL = """
INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts, export_error,
    webhook_pending, event_id, event, user_hash, customer_org_id, session_id, session_inferred, occurred_at)
SELECT %s, %s, now(), 0, 0, '', false, gen_random_uuid(), 'e', 'user-' || (i %% 37), 'org-' || (i %% 5),
    gen_random_uuid(), false, %s
FROM generate_series(1, %s) i
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_events_committed_out_of_id_order_while_folders_run_are_each_counted_once():
    # Given four writers whose transactions commit out of id order (each holds the ids it drew for a
    # random few milliseconds), and two folders running all the while
    app = ApplicationFactory()
    stop = threading.Event()
    errors: list[Exception] = []
    stored: list[int] = []

    def write(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            with psycopg.connect(_database_url()) as conn:
                for _ in range(40):
                    n = rnd.randint(1, 20)
                    conn.execute(INSERT_N_SQL, [app.company_id, app.id, DAY0, n])
                    time.sleep(rnd.uniform(0, 0.03))
                    conn.commit()
                    stored.append(n)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    def fold() -> None:
        try:
            while not stop.is_set():
                fold_drain(chunk_size=50, budget_seconds=5)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    folders = [threading.Thread(target=fold) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    for t in folders + writers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    stop.set()
    for t in folders:
        t.join(timeout=300)
    # When the last rows are folded
    fold_drain()

    # Then every committed event was counted exactly once: none skipped by a cursor passing an id
    # still in flight, none twice
    assert errors == []
    assert _total_events(app) == sum(stored)
    assert Usage.objects.get(company=app.company).event_count == sum(stored)
    assert unfolded_count() == 0


# --- a real worker, SIGKILLed in the middle of a fold ----------------------------------------------

STALL_SQL = """
CREATE OR REPLACE FUNCTION fold_test_stall() RETURNS trigger AS $$
BEGIN PERFORM pg_sleep(600); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER fold_test_stall BEFORE INSERT ON analytics_dailytotal
FOR EACH ROW EXECUTE FUNCTION fold_test_stall();
"""
UNSTALL_SQL = (
    "DROP TRIGGER IF EXISTS fold_test_stall ON analytics_dailytotal; DROP FUNCTION IF EXISTS fold_test_stall();"
)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _sleeping_backends(cursor) -> list[int]:
    cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'")
    return [row[0] for row in cursor.fetchall()]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_fold_leaves_nothing_half_counted(tmp_path, settings):
    from saastracker.celery import app as celery_app

    # Given stored events, and a database that stalls the fold statement half-way (a test trigger)
    app = ApplicationFactory()
    _store(app, 500)
    with connection.cursor() as cursor:
        cursor.execute(STALL_SQL)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TEST_CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    worker = subprocess.Popen(
        [str(REPO / ".venv/bin/celery"), "-A", "saastracker", "worker", "--pool", "solo", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "info"],
        cwd=REPO, env=env, stdout=(tmp_path / "worker.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        # When a real worker takes the fold task and is SIGKILLed while its statement runs
        celery_app.send_task("analytics.fold_pending")
        with connection.cursor() as cursor:
            _wait_for(lambda: _sleeping_backends(cursor), 60, "the fold statement to be under way")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        with connection.cursor() as cursor:
            for pid in _sleeping_backends(cursor):  # the dead worker's session, as TCP keepalive would end it
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            cursor.execute(UNSTALL_SQL)

    # Then its chunk rolled back: every row is still pending and nothing was counted
    _wait_for(lambda: unfolded_count() == 500, 10, "the rollback")
    assert not DailyTotal.objects.exists()
    assert not Usage.objects.exists()

    # When the fold runs again, every event is counted exactly once
    fold_drain()
    _assert_counted_once(app, 500)


# --- a database restart (a private cluster, crashed mid-fold) ---------------------------------------


UNFOLDED_SQL = f"SELECT count(*) FROM ingest_event e WHERE {unfolded_sql(1)}"  # noqa: S608 (from code)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class _Cluster:
    """A throwaway PostgreSQL cluster on a free port: the machine's server is never touched."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="analytics-pg-"))
        self.port = _free_port()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._pg("initdb", "-D", str(self.root / "data"), "-U", "postgres", "-A", "trust", "--no-sync")
        with (self.root / "data" / "postgresql.conf").open("a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n")
            f.write("fsync = off\nshared_buffers = 32MB\n")

    def _pg(self, binary: str, *args: str, check: bool = True) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / binary), *args]), check=check, capture_output=True, timeout=120)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60", "start")

    def crash(self) -> None:
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop", check=False)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "fold") -> str:
        out = subprocess.run(["psql", self.url(db), "-qAtc", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def destroy(self) -> None:
        self.crash()
        shutil.rmtree(self.root, ignore_errors=True)


_SEED = """
from tests.factories import ApplicationFactory, EventFactory
from ingest.models import Event
from datetime import UTC, datetime, timedelta
app = ApplicationFactory()
Event.objects.bulk_create(EventFactory.build(application=app, company=app.company,
    user_hash=f"user-{i % 37}-".ljust(64, "x"), customer_org_id=f"org-{i % 5}",
    occurred_at=datetime(2026, 11, 2, 12, tzinfo=UTC) + timedelta(days=i % 3)) for i in range(600))
"""


def _manage(cluster: _Cluster, *args: str, timeout: float = 300) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": cluster.url("fold"),
        "DB_CONNECT_TIMEOUT": "2",
    }
    return subprocess.Popen(
        [str(REPO / ".venv/bin/python"), "manage.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _run(cluster: _Cluster, *args: str) -> str:
    process = _manage(cluster, *args)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.slow
def test_a_database_restart_mid_fold_leaves_nothing_half_counted():
    cluster = _Cluster()
    try:
        # Given a database of our own with stored events, and a fold stalled half-way through its statement
        cluster.start()
        cluster.psql("CREATE DATABASE fold", db="postgres")
        _run(cluster, "migrate", "-v", "0")
        _run(cluster, "shell", "-c", _SEED)
        cluster.psql(STALL_SQL)
        folding = _manage(cluster, "shell", "-c", "from analytics.fold import fold_drain; fold_drain()")
        _wait_for(
            lambda: cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == "1",
            60,
            "the fold statement to be under way",
        )

        # When the database crashes (immediate shutdown: no checkpoint, crash recovery) and comes back
        cluster.crash()
        folding.communicate(timeout=60)
        cluster.start()

        # Then the interrupted fold failed and left every row pending, nothing counted
        assert folding.returncode != 0
        assert cluster.psql(UNFOLDED_SQL) == "600"
        assert cluster.psql("SELECT count(*) FROM analytics_dailytotal") == "0"

        # When the fold runs again (the stall removed), every event is counted exactly once
        cluster.psql(UNSTALL_SQL)
        _run(cluster, "shell", "-c", "from analytics.fold import fold_drain; fold_drain()")
        assert cluster.psql(UNFOLDED_SQL) == "0"
        assert cluster.psql("SELECT sum(events) FROM analytics_dailytotal WHERE environment = '*'") == "600"
        assert cluster.psql("SELECT string_agg(users::text, ',' ORDER BY day) FROM analytics_dailytotal "
                            "WHERE environment = '*'") == "37,37,37"  # fmt: skip
        assert cluster.psql("SELECT event_count FROM apps_registry_usage") == "600"
    finally:
        cluster.destroy()
