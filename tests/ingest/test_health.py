"""GET /api/v1/ingest/health: public, says only whether events can be stored."""

import socket
import threading
import time

import pytest
from django.db import connection

from .sdk_helpers import HEALTH_URL, post_events, sdk_event
from .v1_helpers import event_body, send


def test_health_is_ok_without_credentials(api_client, db):
    response = api_client.get(HEALTH_URL)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_health_is_never_rate_limited(api_client, db, settings):
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 1

    statuses = {api_client.get(HEALTH_URL).status_code for _ in range(5)}

    assert statuses == {200}


def test_health_is_get_only(api_client, db):
    assert api_client.post(HEALTH_URL, {}, format="json").status_code == 405


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_down(transactional_db):
    """Point the live connection at a port where no PostgreSQL listens, then put it back."""
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(_closed_port())
    yield
    connection.close()
    connection.settings_dict["PORT"] = original


def test_health_is_503_when_the_database_is_unreachable(api_client, database_down):
    response = api_client.get(HEALTH_URL)

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_events_are_refused_with_503_not_500_when_the_database_is_down(api_client, sdk_key, database_down):
    # the key's credentials are not cached yet, so authentication itself needs the database
    response = post_events(api_client, sdk_key, [sdk_event()])

    assert response.status_code == 503
    assert response["Retry-After"]
    assert "Traceback" not in response.content.decode()
    assert response.json()["message"] == "The event could not be stored; retry with backoff."


@pytest.fixture
def reader_key(transactional_db):
    """A member's personal API key for the analytics read API, made while the database is up."""
    from tests.factories import ApplicationFactory, MembershipFactory, PersonalApiKeyFactory

    application = ApplicationFactory()
    user = MembershipFactory(company=application.company).user
    return application, PersonalApiKeyFactory(user=user).raw_key


def test_a_read_while_the_database_is_down_is_503_without_mentioning_events(api_client, reader_key, request):
    application, key = reader_key
    request.getfixturevalue("database_down")

    response = api_client.get(f"/api/v1/analytics/apps/{application.uuid}/activity", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json() == {"error": "unavailable", "message": "The database is unavailable; retry with backoff."}


def test_health_recovers_when_the_database_is_back(api_client, transactional_db):
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(_closed_port())
    try:
        assert api_client.get(HEALTH_URL).status_code == 503
    finally:
        connection.settings_dict["PORT"] = original

    assert api_client.get(HEALTH_URL).status_code == 200


def test_health_answers_503_within_the_connect_timeout_when_the_database_never_answers(api_client, transactional_db):
    # A loopback listener that accepts TCP but never speaks PostgreSQL: like a host dropping packets.
    # Without DB_CONNECT_TIMEOUT (5 s by default) the request would hang for as long as the OS lets it.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    original_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(silent.getsockname()[1])
    answers = []
    try:
        started = time.monotonic()
        caller = threading.Thread(target=lambda: answers.append(api_client.get(HEALTH_URL)), daemon=True)
        caller.start()
        caller.join(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original_port
        silent.close()

    assert answers, "the health check hung on a silent database"
    assert answers[0].status_code == 503
    assert elapsed < 10


_REFUSE_EVENTS = """
CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
CREATE TRIGGER test_disk_full BEFORE INSERT ON ingest_event FOR EACH ROW EXECUTE FUNCTION test_disk_full();
"""


@pytest.mark.django_db(transaction=True)
def test_health_is_503_while_event_inserts_fail_though_other_writes_succeed(
    client, api_client, application, api_secret
):
    # Given the event table refuses every row the way a full disk does (SQLSTATE 53100), while the
    # health probe's own one-row write still succeeds (it rewrites a page it already has)
    with connection.cursor() as cursor:
        cursor.execute(_REFUSE_EVENTS)
    try:
        # When an event is sent, it is refused
        assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 503
        # Then health says events cannot be stored, instead of 200
        response = api_client.get(HEALTH_URL)
        assert response.status_code == 503
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_disk_full ON ingest_event; DROP FUNCTION test_disk_full()")

    # And once an event is stored again, health is 200 again
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    assert api_client.get(HEALTH_URL).status_code == 200


def test_health_is_503_on_a_read_only_database(api_client, transactional_db):
    # Given new sessions see a read-only database (as on a replica after a failover); the probe
    # runs on a thread and connection of its own, which reconnects after each check in tests
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        # Then health is 503, where SELECT 1 would have said 200
        assert api_client.get(HEALTH_URL).status_code == 503
    finally:
        with connection.cursor() as cursor:  # this session predates the setting: still writable
            cursor.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')

    assert api_client.get(HEALTH_URL).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_readyz_is_200_and_names_redis_degraded_when_redis_is_unreachable(client, settings):
    # Given Redis does not answer (the limiter fails open: events are still stored)
    from saastracker.redis_client import get_redis

    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    get_redis.cache_clear()
    try:
        response = client.get("/readyz")
    finally:
        get_redis.cache_clear()

    # Then the instance stays in rotation, and the body says what is degraded
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "degraded", "migrations": "ok"},
        "degraded": ["redis"],
    }
