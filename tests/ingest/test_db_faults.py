"""Real faults against the production server: a PRIVATE PostgreSQL cluster and redis-server, crashed,
stopped and made read-only under the service (never the machine's shared ones).

One stack per module: a private cluster (migrated), a private Redis, an application, and
`scripts/serve` (granian, prod settings) on a free port; each test puts the stack back as it found it.
"""

import hashlib
import hmac
import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.private_services import PrivatePostgres, PrivateRedis, served_stack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DB = "faults_private"


class Stack:
    def __init__(self, pg: PrivatePostgres, redis: PrivateRedis, port: int, app: dict) -> None:
        self.pg, self.redis, self.port, self.app = pg, redis, port, app

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def post_event(self, conn: http.client.HTTPConnection, marker: str) -> int:
        body = json.dumps(
            {"event": "page_view", "user_hash": "a" * 64, "customer_org_id": "org", "path": f"/{marker}"}
        ).encode()
        signature = hmac.new(self.app["api_secret"].encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "x-app-uuid": self.app["app_uuid"], "x-signature": signature}
        conn.request("POST", "/v1/events", body, headers)
        response = conn.getresponse()
        response.read()
        return response.status

    def wait_for(self, path: str, status: int, timeout: float = 20) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.request("GET", path)
            if answer[0] == status or time.monotonic() > deadline:
                return answer
            time.sleep(0.2)

    def sql(self, statement: str) -> list[tuple]:
        # default_transaction_read_only may be on while a test runs: this session overrides it
        with psycopg.connect(self.pg.url(DB), autocommit=True, options="-c default_transaction_read_only=off") as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []


def _env(pg: PrivatePostgres, redis: PrivateRedis, port: int) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="saastracker.settings.prod",
        DATABASE_URL=pg.url(DB),
        REDIS_URL=redis.url,
        CELERY_BROKER_URL=redis.url,
        SECRET_KEY="test-only-secret-key",
        FIELD_ENCRYPTION_KEY="dGVzdC1vbmx5LWtleS0zMi1ieXRlcy1sb25nLSEhIT0=",
        SECURE_SSL_REDIRECT="0",
        METRICS_LOOPBACK_ALLOWED="1",
        ALLOWED_HOSTS="*",
        LOG_LEVEL="WARNING",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEB_THREADS="16",
        HEALTH_CACHE_SECONDS="0.5",
        DB_IN_DOUBT_SECONDS="10",  # a crash recovery on this busy shared machine can take seconds
        RATE_LIMIT_PER_SECOND="1000000",
        RATE_LIMIT_BURST="1000000",
    )
    return env


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with served_stack(_env, db=DB, company="Faults") as served:
        yield Stack(served.pg, served.redis, served.port, served.app)


def test_readyz_and_health_are_ok_when_everything_is_up(stack):
    status, body = stack.wait_for("/readyz", 200)

    assert status == 200
    assert json.loads(body) == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "migrations": "ok"}}
    assert stack.request("GET", "/api/v1/ingest/health")[0] == 200
    assert stack.request("GET", "/livez") == (200, b'{"status":"ok"}')


def test_readyz_names_the_database_when_postgresql_is_stopped(stack):
    # Given the service's PostgreSQL stops
    stack.pg.stop()
    try:
        # Then /readyz answers 503 naming the database, health says unavailable, and /livez still answers
        status, body = stack.wait_for("/readyz", 503)
        assert status == 503
        assert "database" in json.loads(body)["failing"]
        assert stack.request("GET", "/api/v1/ingest/health")[0] == 503
        assert stack.request("GET", "/livez")[0] == 200
    finally:
        stack.pg.start()
    # And once it is back, ready again without a restart of the service
    assert stack.wait_for("/readyz", 200)[0] == 200


def test_readyz_names_redis_as_degraded_but_stays_200_when_redis_is_stopped(stack):
    stack.redis.stop()
    try:
        # Storing events does not need Redis (rate limits fail open): ready, degraded (issue 17, item 2)
        deadline = time.monotonic() + 20
        while True:
            status, body = stack.request("GET", "/readyz")
            if json.loads(body).get("degraded") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200
        assert json.loads(body)["degraded"] == ["redis"]
        assert stack.request("GET", "/api/v1/ingest/health")[0] == 200
    finally:
        stack.redis.start()  # same port
    assert stack.wait_for("/readyz", 200)[0] == 200


def test_health_is_503_while_the_database_is_read_only_and_200_when_writable_again(stack):
    # Given PostgreSQL turns read-only (as after a failover to a replica, or by an operator)
    stack.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    stack.sql("SELECT pg_reload_conf()")
    try:
        # Then events are refused, and health and readiness say so instead of 200
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        assert stack.post_event(conn, "read-only") == 503
        conn.close()
        assert stack.wait_for("/api/v1/ingest/health", 503)[0] == 503
        _, body = stack.wait_for("/readyz", 503)
        assert json.loads(body)["failing"] == ["database"]
    finally:
        stack.sql("ALTER SYSTEM RESET default_transaction_read_only")
        stack.sql("SELECT pg_reload_conf()")
    # And once writable again, healthy again
    assert stack.wait_for("/api/v1/ingest/health", 200)[0] == 200


def test_health_verdict_is_cached_so_polling_costs_few_writes(stack):
    before = stack.sql("SELECT checked_at FROM ingest_writeprobe WHERE id = 1")
    # When health is polled 50 times in quick succession
    for _ in range(50):
        assert stack.request("GET", "/api/v1/ingest/health")[0] == 200
    # Then the probe row was rewritten at most a few times (HEALTH_CACHE_SECONDS=0.5 here), not 50
    commits = stack.sql("SELECT n_tup_upd + n_tup_ins FROM pg_stat_user_tables WHERE relname = 'ingest_writeprobe'")
    assert before
    assert commits[0][0] < 50


def test_no_event_answered_503_is_stored_when_postgresql_crashes_under_load(stack):
    # Given 24 clients sending events, each with its own marker, for 10 s
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()
    until = time.monotonic() + 10

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        while time.monotonic() < until:
            marker = str(uuid.uuid4())
            try:
                status = stack.post_event(conn, marker)
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
                continue  # no answer at all: the client cannot know either way
            with lock:
                answers.append((marker, status))
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(24)]
    for thread in threads:
        thread.start()
    # When PostgreSQL crashes (immediate shutdown, no checkpoint) three times under that load
    for _ in range(3):
        time.sleep(2.5)
        stack.pg.crash()
        stack.pg.start()
    for thread in threads:
        thread.join(60)

    # Then every 202 is stored, and no 503 is: a client's retry never stores an event twice
    stored = {path.lstrip("/") for (path,) in stack.sql("SELECT path FROM ingest_event")}
    statuses = [status for _, status in answers]
    assert set(statuses) <= {202, 503}, set(statuses)
    assert statuses.count(503) > 0, "the crashes were not felt: the test did not test anything"
    assert [m for m, s in answers if s == 503 and m in stored] == []
    assert [m for m, s in answers if s == 202 and m not in stored] == []
