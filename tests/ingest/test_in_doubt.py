"""In-doubt commits: the INSERT committed, but the connection died before its answer reached us.

A TCP proxy between the service and the real PostgreSQL lets the chosen statement through, lets
PostgreSQL commit it, and then drops the connection instead of forwarding the reply: exactly what
a crash between the commit and the answer looks like to the client. Nothing is mocked; the service
must find out on its own that the row is there and answer 2xx, or a client's retry stores the
event twice. (The crash of a whole private cluster under load is in test_db_faults.py.)
"""

import json
import re
import socket
import threading
import uuid

import pytest
from django.db import connection

from ingest.models import Event, IdentifyLink, SdkEvent

from .sdk_helpers import EVENTS_URL, IDENTIFY_URL, sdk_event
from .test_v1_serving import wsgi_call
from .v1_helpers import URL, event_body, sign

_READY_FOR_QUERY = b"Z\x00\x00\x00\x05"
_COMMAND_DONE = re.compile(rb"C\x00\x00\x00.(INSERT 0 \d+|SELECT \d+)\x00", re.DOTALL)  # CommandComplete


class ReplyCutter:
    """Forwards PostgreSQL's protocol; once `arm(marker)` is called, the next statement whose text
    contains `marker` reaches the server, and its reply is swallowed and the connection closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.cuts = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        with self.lock:
            self.marker = marker

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state = {"cutting": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        while data := self._recv(client):
            with self.lock:
                if self.marker is not None and self.marker in data:
                    self.marker = None
                    state["cutting"] = True
            try:
                server.sendall(data)
            except OSError:
                return

    def _down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        held = b""
        while data := self._recv(server):
            if state["cutting"]:
                held += data
                if _READY_FOR_QUERY not in held:
                    continue  # hold the reply until its transaction is over
                if not _COMMAND_DONE.search(held):  # only the statement's preparation: let it through
                    data, held = held, b""
                else:  # the statement ran and its implicit transaction committed: drop the answer
                    with self.lock:
                        self.cuts += 1
                    for sock in (client, server):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
            try:
                client.sendall(data)
            except OSError:
                return

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutter(transactional_db, application, api_secret, sdk_key):
    """The service's connections go through a ReplyCutter for the test (credentials exist before)."""
    settings_dict = connection.settings_dict
    original = settings_dict["HOST"], settings_dict["PORT"]
    proxy = ReplyCutter((original[0] or "127.0.0.1", int(original[1] or 5432)))
    connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(proxy.port)
    yield proxy
    connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = original
    proxy.close()


def _post_v1(application, api_secret, body: bytes, **headers: str) -> dict:
    return wsgi_call(
        URL,
        method="POST",
        body=body,
        headers={
            "CONTENT_TYPE": "application/json",
            "HTTP_X_APP_UUID": str(application.uuid),
            "HTTP_X_SIGNATURE": sign(api_secret, body),
            **headers,
        },
    )


def _post_sdk(url: str, sdk_key: str, payload: dict) -> dict:
    return wsgi_call(
        url,
        method="POST",
        body=json.dumps(payload).encode(),
        headers={"CONTENT_TYPE": "application/json", "HTTP_X_API_KEY": sdk_key},
    )


def test_a_plain_event_committed_before_the_connection_died_is_answered_202_once(cutter, application, api_secret):
    # Given PostgreSQL commits the event's INSERT and the connection dies before its answer arrives
    cutter.arm(b"INSERT INTO ingest_event (")

    # When the event is sent
    answer = _post_v1(application, api_secret, event_body(event="in_doubt"))

    # Then the service found its row and says so: 202 with the stored id, and the row exists once
    assert cutter.cuts == 1
    assert answer["status"] == 202, answer
    event_id = uuid.UUID(json.loads(answer["body"])["event_id"])
    assert list(Event.objects.filter(event="in_doubt").values_list("event_id", flat=True)) == [event_id]


def test_an_event_with_an_idempotency_key_committed_before_the_connection_died_is_answered_202(
    cutter, application, api_secret
):
    cutter.arm(b"INSERT INTO ingest_event (")

    answer = _post_v1(application, api_secret, event_body(event="keyed"), HTTP_IDEMPOTENCY_KEY="k-1")

    assert cutter.cuts == 1
    assert answer["status"] == 202, answer
    event_id = json.loads(answer["body"])["event_id"]
    # And a retry with the same key is answered with the same event, still stored once
    again = _post_v1(application, api_secret, event_body(event="keyed"), HTTP_IDEMPOTENCY_KEY="k-1")
    assert again["status"] == 202
    assert json.loads(again["body"])["event_id"] == event_id
    assert Event.objects.filter(event="keyed").count() == 1


def test_an_sdk_batch_committed_before_the_connection_died_is_answered_200(cutter, sdk_key):
    events = [sdk_event(), sdk_event()]
    cutter.arm(b"INSERT INTO ingest_sdkevent (")

    answer = _post_sdk(EVENTS_URL, sdk_key, {"events": events})

    assert cutter.cuts == 1
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["accepted"] == 2
    assert SdkEvent.objects.filter(event_id__in=[e["event_id"] for e in events]).count() == 2


def test_an_identify_committed_before_the_connection_died_is_answered_200_as_created(cutter, sdk_key):
    anon_id = str(uuid.uuid4())
    cutter.arm(b"INSERT INTO ingest_identifylink (")

    answer = _post_sdk(IDENTIFY_URL, sdk_key, {"anon_id": anon_id, "user_id": "user-7"})

    assert cutter.cuts == 1
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["created"] is True
    assert IdentifyLink.objects.filter(anon_id=anon_id, user_id="user-7").count() == 1


def test_concurrent_events_whose_group_reply_was_lost_are_each_answered_202_and_stored_once(
    cutter, application, api_secret
):
    # Given 12 clients sending at once, and the reply of the first group INSERT lost after its commit
    cutter.arm(b"INSERT INTO ingest_event (")
    answers: dict[int, dict] = {}

    def sender(i: int) -> None:
        try:
            answers[i] = _post_v1(application, api_secret, event_body(event=f"group-{i}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then every client got a 202 with the id of its own stored event, each stored exactly once
    assert cutter.cuts == 1
    assert sorted(answer["status"] for answer in answers.values()) == [202] * 12, answers
    for i, answer in answers.items():
        event_id = uuid.UUID(json.loads(answer["body"])["event_id"])
        assert list(Event.objects.filter(event=f"group-{i}").values_list("event_id", flat=True)) == [event_id]
