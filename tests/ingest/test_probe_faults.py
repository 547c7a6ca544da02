"""Probes and /metrics around real faults (issue 17, items 2, 3 and 4): a PRIVATE PostgreSQL cluster
and redis-server under `scripts/serve`, killed, stopped, frozen and made read-only.

Its own stack (see test_db_faults.py for the pattern), with one web process so that the process
whose write fails is the one probed, and verdicts cached for 5 s, so a probe that trusts its cache
over a failing write is caught.
"""

import http.client
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.private_services import PrivatePostgres, PrivateRedis, served_stack
from tests.ingest.test_db_faults import DB, Stack, _env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    def env(pg: PrivatePostgres, redis: PrivateRedis, port: int) -> dict[str, str]:
        return {**_env(pg, redis, port), "HEALTH_CACHE_SECONDS": "5"}

    with served_stack(env, db=DB, company="Probes") as served:
        result = Stack(served.pg, served.redis, served.port, served.app)
        assert result.wait_for("/readyz", 200, timeout=30)[0] == 200
        yield result


def _scrape(stack: Stack) -> dict[tuple[str, frozenset], float]:
    status, body = stack.request("GET", "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _timed(stack: Stack, path: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


def _cluster_pids(pg: PrivatePostgres) -> list[int]:
    """The postmaster and every process it forked (backends, checkpointer, walwriter, ...)."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    children = (Path(f"/proc/{postmaster}/task/{postmaster}/children")).read_text().split()
    return [postmaster, *map(int, children)]


def test_readyz_stays_200_and_says_degraded_while_redis_is_killed(stack):
    # Given Redis is SIGKILLed (ingest survives it: the rate limiter fails open)
    assert stack.redis.proc is not None
    stack.redis.proc.kill()
    stack.redis.proc.wait(10)
    stack.redis.proc = None
    try:
        # Then /readyz keeps the instance in rotation, naming Redis as degraded once the cache expires
        deadline = time.monotonic() + 15
        while True:
            status, body = stack.request("GET", "/readyz")
            assert status == 200, body
            if json.loads(body).get("degraded") == ["redis"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert json.loads(body) == {
            "status": "degraded",
            "checks": {"database": "ok", "redis": "degraded", "migrations": "ok"},
            "degraded": ["redis"],
        }
        # ... events are taken meanwhile
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        assert [stack.post_event(conn, f"redis-down-{i}") for i in range(5)] == [202] * 5
        conn.close()
        # ... and /metrics says the same: ready, Redis check failing
        scraped = _scrape(stack)
        assert scraped[("saastracker_ready", frozenset())] == 1
        assert scraped[("saastracker_readiness_check", frozenset({("check", "redis")}))] == 0
        assert scraped[("saastracker_readiness_check", frozenset({("check", "database")}))] == 1
    finally:
        stack.redis.start()  # same port
    deadline = time.monotonic() + 15
    while json.loads(stack.request("GET", "/readyz")[1]).get("status") != "ok" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(stack.request("GET", "/readyz")[1])["status"] == "ok"


def test_probes_turn_503_at_the_first_failed_write_and_200_at_the_first_good_one(stack):
    # Given both probes said 200 a moment ago (a verdict cached for 5 s)
    assert stack.request("GET", "/readyz")[0] == 200
    assert stack.request("GET", "/api/v1/ingest/health")[0] == 200
    # When PostgreSQL turns read-only and an event is refused
    stack.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    stack.sql("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)  # the reload reaches every backend
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        assert stack.post_event(conn, "read-only") == 503
        # Then both probes say 503 at once, not after the cache runs out
        assert stack.request("GET", "/readyz")[0] == 503
        assert stack.request("GET", "/api/v1/ingest/health")[0] == 503
    finally:
        stack.sql("ALTER SYSTEM RESET default_transaction_read_only")
        stack.sql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    # And when writable again, the first stored event makes both say 200 at once, in agreement
    assert stack.post_event(conn, "writable") == 202
    conn.close()
    assert stack.request("GET", "/api/v1/ingest/health")[0] == 200
    assert stack.request("GET", "/readyz")[0] == 200


def test_probes_answer_503_within_a_second_while_postgresql_is_frozen(stack):
    # Given every PostgreSQL process is frozen (SIGSTOP): connections open but nothing answers,
    # and no server-side statement timeout can fire
    time.sleep(5.5)  # let the 200 verdict cached by earlier tests expire
    pids = _cluster_pids(stack.pg)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    answers = []
    try:
        # When the probes are polled
        for _ in range(3):
            answers.append(("/readyz", *_timed(stack, "/readyz")))
            answers.append(("health", *_timed(stack, "/api/v1/ingest/health")))
            time.sleep(0.3)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # Then each answers 503 within a second
    assert [(path, status) for path, status, _, _ in answers] == [("/readyz", 503), ("health", 503)] * 3
    slowest = max(elapsed for *_, elapsed in answers)
    assert slowest < 1.0, answers
    print(f"slowest probe answer while PostgreSQL was frozen: {slowest:.3f} s")
    # And once PostgreSQL runs again they say 200 again
    assert stack.wait_for("/readyz", 200, timeout=30)[0] == 200


def test_metrics_say_the_state_gauges_could_not_be_read_while_postgresql_is_stopped(stack):
    # Given PostgreSQL is stopped
    stack.pg.stop()
    try:
        # When /metrics is scraped
        started = time.monotonic()
        scraped = _scrape(stack)
        took = time.monotonic() - started
    finally:
        stack.pg.start()
    # Then it answers, and says explicitly that the stored-state gauges failed (instead of dropping them)
    for collector in ("export_collect", "webhooks_collect", "fold_collect"):
        assert scraped[("saastracker_state_scrape_ok", frozenset({("collector", collector)}))] == 0
    assert ("saastracker_export_lag_seconds", frozenset({("table", "events")})) not in scraped
    # ... while what does not need PostgreSQL is still there: Redis-backed heartbeats, readiness
    assert scraped[("saastracker_state_scrape_ok", frozenset({("collector", "heartbeat_collect")}))] == 1
    assert ("saastracker_ready", frozenset()) in scraped  # (its verdict may be cached up to 5 s here)
    assert took < 5
    # And once PostgreSQL is back, every collector reads again
    stack.wait_for("/readyz", 200, timeout=30)
    # (each web process's connection pool refills on its own: the process that answers /readyz may
    # be back a moment before the one that answers the scrape)
    back_at = time.monotonic()
    scraped = _scrape(stack)
    while scraped[("saastracker_state_scrape_ok", frozenset({("collector", "export_collect")}))] != 1:
        assert time.monotonic() - back_at < 10, "a collector still fails 10 s after /readyz said 200"
        time.sleep(0.5)
        scraped = _scrape(stack)
    print(f"every collector read again {time.monotonic() - back_at:.1f} s after /readyz said 200")
    assert ("saastracker_export_lag_seconds", frozenset({("table", "events")})) in scraped
