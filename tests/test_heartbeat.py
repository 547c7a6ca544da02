"""Worker liveness beats (saastracker/heartbeat.py): what a pool process records when it runs a task."""

import os
import time

import pytest

from saastracker import heartbeat
from saastracker.celery import HEARTBEAT_TASK, QUEUES, app

from .test_metrics import samples, value


@pytest.fixture(autouse=True)
def _no_throttle():
    heartbeat._last.clear()
    yield
    heartbeat._last.clear()


@pytest.mark.django_db
def test_beat_sends_a_heartbeat_to_every_queue():
    entries = [e for e in app.conf.beat_schedule.values() if e["task"] == HEARTBEAT_TASK]

    assert sorted(e["options"]["queue"] for e in entries) == sorted(QUEUES)
    assert all(e["options"]["expires"] <= e["schedule"] for e in entries)


@pytest.mark.django_db
def test_a_heartbeat_run_touches_the_supervisors_file_and_the_metrics_gauge(client, tmp_path, monkeypatch):
    # Given the supervisor's file for this worker is a minute old and no beat of `webhooks` is known
    beat_file = tmp_path / "webhooks"
    beat_file.touch()
    os.utime(beat_file, (time.time() - 60, time.time() - 60))
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(beat_file))
    scraped = samples(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())
    assert ("saastracker_worker_heartbeat_age_seconds", frozenset({("queue", "webhooks")})) not in scraped

    # When the heartbeat task runs as taken from the webhooks queue (the same task signals as in a worker)
    app.tasks[HEARTBEAT_TASK].apply(routing_key="webhooks")

    # Then the file is fresh, and /metrics gives the queue's heartbeat age
    assert time.time() - beat_file.stat().st_mtime < 5
    scraped = samples(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())
    assert 0 <= value(scraped, "saastracker_worker_heartbeat_age_seconds", queue="webhooks") < 5
    assert value(scraped, "saastracker_state_scrape_ok", collector="heartbeat_collect") == 1


def test_a_long_task_keeps_beating_while_it_runs(tmp_path, monkeypatch):
    # Given a task taken from the export queue has been running for a while (no start or end since)
    beat_file = tmp_path / "export"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(beat_file))

    class Running:
        class request:  # the shape of a Celery task's request
            delivery_info = {"routing_key": "export"}
            hostname = "export@host"

    heartbeat.task_started(Running)
    try:
        os.utime(beat_file, (time.time() - 60, time.time() - 60))
        heartbeat._last.clear()
        # Then the process's heartbeat thread touches the file again within a couple of seconds
        deadline = time.monotonic() + 5
        while time.time() - beat_file.stat().st_mtime > 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert time.time() - beat_file.stat().st_mtime < 30
    finally:
        heartbeat.task_ended(Running)
