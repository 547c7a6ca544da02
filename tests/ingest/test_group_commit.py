"""Group commit of plain /v1/events under real concurrency, through the production WSGI entry point.

Each test holds the first flush on its statement until the other threads have queued their rows,
so the next flush really writes a group; the rows travel to a real PostgreSQL either way.
"""

import json
import threading
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection, connections

from ingest import outbox
from ingest.models import Event
from ingest.services import v1_events
from tests.factories import EventFactory

from .test_v1_serving import wsgi_call
from .v1_helpers import URL, event_body, sign

THREADS = 16


class _Spy:
    def __init__(self, cursor, on_execute):
        self.cursor = cursor
        self.on_execute = on_execute

    def execute(self, sql, params):
        self.on_execute(self.cursor, params)
        return self.cursor.execute(sql, params)


@pytest.fixture
def flushes(monkeypatch):
    """Row counts of each group statement; the first is held until `hold_until` rows are queued."""
    group = v1_events._group
    real = group.cursor
    sizes: list[int] = []
    state = {"hold_until": 0, "on_group": None}
    held = threading.Event()

    def on_execute(cursor, params):
        sizes.append(len(json.loads(params[0])))
        if len(sizes) == 1:
            held.set()
            deadline = time.monotonic() + 10
            while len(group._queue) < state["hold_until"] and time.monotonic() < deadline:
                time.sleep(0.005)
        elif sizes[-1] > 1 and state["on_group"] is not None:
            state["on_group"](cursor)

    @contextmanager
    def spying_cursor():
        with real() as cursor:
            yield _Spy(cursor, on_execute)

    monkeypatch.setattr(group, "cursor", spying_cursor)
    return sizes, state, held


def _post(application, api_secret, body: bytes) -> dict:
    return wsgi_call(
        URL,
        method="POST",
        body=body,
        headers={
            "CONTENT_TYPE": "application/json",
            "HTTP_X_APP_UUID": str(application.uuid),
            "HTTP_X_SIGNATURE": sign(api_secret, body),
        },
    )


def _run_threads(target, count: int, *, name=lambda i: f"sender-{i}"):
    errors = []

    def run(i):
        try:
            target(i)
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), name=name(i)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_are_each_stored_once_with_their_own_fields_and_id(application, api_secret, flushes):
    sizes, state, _ = flushes
    state["hold_until"] = THREADS - 1
    per_thread = 8
    sent = {}  # event_id -> what was sent
    lock = threading.Lock()

    # Given 16 clients posting 8 events each at the same time
    def sender(i):
        for j in range(per_thread):
            fields = {
                "event": f"e{i}-{j}",
                "customer_org_id": f"org{i}",
                "path": f"/p/{j}",
                "properties": {"j": j},
                "ts_epoch": 1_700_000_000 + 100 * i + j,
                "plan": "pro" if j % 2 else ...,
            }
            answer = _post(application, api_secret, event_body(**fields))
            assert answer["status"] == 202, answer
            with lock:
                sent[json.loads(answer["body"])["event_id"]] = fields

    _run_threads(sender, THREADS)

    # Then each caller got its own id, and each event is stored exactly once with its own fields
    assert len(sent) == THREADS * per_thread
    stored = list(Event.objects.filter(application=application).values())
    assert len(stored) == THREADS * per_thread
    for row in stored:
        fields = sent[str(row["event_id"])]
        assert (row["event"], row["customer_org_id"], row["path"], row["properties"]) == (
            fields["event"],
            fields["customer_org_id"],
            fields["path"],
            fields["properties"],
        )
        assert row["occurred_at"].timestamp() == fields["ts_epoch"]
        assert row["plan"] == (None if fields["plan"] is ... else fields["plan"])
        assert row["company_id"] == application.company_id
        assert row["export_state"] == 0
    # And the requests queued behind the held flush were written together, every row exactly once
    assert max(sizes) >= THREADS - 1
    assert sum(sizes) == THREADS * per_thread


@pytest.mark.django_db(transaction=True)
def test_a_row_the_database_rejects_fails_only_its_own_request(application, api_secret, flushes, monkeypatch):
    sizes, state, held = flushes
    state["hold_until"] = THREADS - 1
    taken = EventFactory(application=application, company=application.company).event_id
    new_id = v1_events.event_id_new
    # One sender's event gets an id that is already stored: its row violates the unique constraint
    monkeypatch.setattr(
        v1_events,
        "event_id_new",
        lambda: taken if threading.current_thread().name == "duplicate" else new_id(),
    )
    answers = {}

    def sender(i):
        if i == 0:
            held.wait(10)  # queue behind the held first flush, so the bad row is in a group
        answers[i] = _post(application, api_secret, event_body(event=f"e{i}"))

    # When 16 events arrive together, one of them carrying the duplicate
    _run_threads(sender, THREADS, name=lambda i: "duplicate" if i == 0 else f"sender-{i}")

    # Then that one is refused with a retryable 503 and nothing of it is stored...
    assert answers[0]["status"] == 503
    assert Event.objects.filter(event="e0").count() == 0
    # ...while every other event of its group is accepted and stored once, under its own id
    for i in range(1, THREADS):
        assert answers[i]["status"] == 202, answers[i]
        event_id = json.loads(answers[i]["body"])["event_id"]
        assert Event.objects.filter(event_id=event_id, event=f"e{i}").count() == 1
    assert max(sizes) >= THREADS - 1  # the bad row really was in a group with others


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_during_a_group_answers_no_2xx_for_an_unstored_event(application, api_secret, flushes):
    sizes, state, held = flushes
    state["hold_until"] = THREADS - 1
    db = connection.settings_dict
    dsn = {"dbname": db["NAME"], "user": db["USER"], "host": db["HOST"], "port": db["PORT"] or 5432}

    def kill_own_backend(cursor):
        pid = cursor.connection.info.backend_pid
        with psycopg.connect(**dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    state["on_group"] = kill_own_backend  # the leader's connection dies as it sends a group
    answers = {}

    def sender(i):
        if i:
            held.wait(10)
        answers[i] = _post(application, api_secret, event_body(event=f"e{i}"))

    # When the connection of a group's leader is killed just before the group's statement
    _run_threads(sender, THREADS)

    # Then the whole group is answered 503 (retry is safe), and every 202 is a stored event
    statuses = [answer["status"] for answer in answers.values()]
    assert set(statuses) <= {202, 503}
    assert statuses.count(503) >= THREADS - 1
    for i, answer in answers.items():
        stored = Event.objects.filter(event=f"e{i}").count()
        if answer["status"] == 202:
            assert Event.objects.filter(event_id=uuid.UUID(json.loads(answer["body"])["event_id"])).count() == 1
        else:
            assert stored == 0
    assert max(sizes) >= THREADS - 1


@pytest.mark.django_db(transaction=True)
def test_waking_the_workers_after_a_commit_never_needs_the_database():
    # Given a request thread whose row was committed by another thread's group (so it holds no
    # connection of its own), and a database that has just become unreachable
    settings_dict = connection.settings_dict
    original_port = settings_dict["PORT"]
    errors = []

    def follower_after_commit():
        try:
            outbox.kick(export=True, webhooks=True)  # what v1_event_ingest does once its row is stored
        except Exception as exc:  # surfaced below: this would turn a stored event into a 503
            errors.append(exc)
        finally:
            connections.close_all()

    settings_dict["PORT"] = str(_closed_port())
    try:
        thread = threading.Thread(target=follower_after_commit)
        thread.start()
        thread.join(30)
    finally:
        settings_dict["PORT"] = original_port

    # Then the kick does not fail: the event's commit is what the answer depends on
    assert errors == []


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
