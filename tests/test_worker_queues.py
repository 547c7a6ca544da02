"""Queues and `scripts/worker`: export, recovery, webhooks and maintenance never wait on each other."""

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from ingest.models import ExportBatch
from saastracker.celery import QUEUES, app
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory
from webhooks.services import endpoint_create

REPO = Path(__file__).resolve().parents[1]

EXPECTED_QUEUES = {
    "ingest.export_pending": "export",
    "ingest.export_recover": "recovery",
    "webhooks.fanout_pending": "webhooks",
    "webhooks.deliver_message": "webhooks",
    "webhooks.deliver_messages": "webhooks",
    "ingest.export_sweep": "maintenance",
    "ingest.retention": "maintenance",
    "webhooks.sweep_due": "maintenance",
    "apps_registry.usage_refresh": "maintenance",
    "analytics.fold_pending": "analytics",
    "analytics.scan_app": "scans",
    "analytics.scan_daily": "scans",
}


def _queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name, args=(), kwargs={})["queue"].name


@pytest.mark.parametrize(("task_name", "queue"), EXPECTED_QUEUES.items())
def test_each_task_is_published_to_its_own_queue(task_name, queue):
    assert _queue_of(task_name) == queue


def test_every_registered_and_periodic_task_lands_on_a_queue_the_workers_consume():
    app.loader.import_default_modules()
    ours = [name for name in app.tasks if not name.startswith("celery.")]
    periodic = [entry["task"] for entry in app.conf.beat_schedule.values()]
    assert {_queue_of(name) for name in ours + periodic} <= set(QUEUES)
    assert set(QUEUES) == {"export", "recovery", "webhooks", "maintenance", "analytics", "scans"}


@contextmanager
def _black_hole():
    """A BigQuery that accepts connections and never answers: every export call hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _nodes_up(expected: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for reply in app.control.ping(timeout=1.0) or []:
            seen.update(name.split("@", 1)[0] for name in reply)
        if expected <= seen:
            return
    raise AssertionError(f"workers up: {sorted(seen)}, expected {sorted(expected)}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_webhooks_are_delivered_while_every_export_task_hangs(receiver, tmp_path):
    # Given BigQuery hangs on every call, rows wait for export, and `scripts/worker` runs every role
    application = ApplicationFactory()
    endpoint_create(company=application.company, url=receiver.url, event_types=["onboarding.started"])
    EventFactory.create_batch(20, application=application)
    db = connection.settings_dict
    with _black_hole() as hung_bigquery:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
            "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "TEST_CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "BIGQUERY_PROJECT": "test-proj",
            "BIGQUERY_DATASET": "hung",
            "BIGQUERY_API_ENDPOINT": hung_bigquery,
            "BIGQUERY_TIMEOUT_SECONDS": "20",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
            "CELERY_BEAT": "0",
            "CELERY_LOG_LEVEL": "info",
            "WORKER_HEARTBEAT_DIR": str(tmp_path / "heartbeat"),  # killed with SIGKILL: no cleanup runs
        }
        log = tmp_path / "worker.log"
        worker = subprocess.Popen(  # noqa: S603 (our own script)
            [str(REPO / "scripts" / "worker")],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _nodes_up({"export", "webhooks", "maintenance", "analytics", "scans"}, timeout=90)
            # ... and more export tasks are waiting than there are export processes, each stuck on BigQuery
            for _ in range(6):
                app.send_task("ingest.export_pending", kwargs={"fanout": False})
            deadline = time.monotonic() + 30
            while not ExportBatch.objects.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ExportBatch.objects.exists(), f"export never claimed a batch; see {log}"

            # When a triggering event is stored and the fan-out kicked, as ingest does
            row = SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)
            kicked = time.monotonic()
            app.send_task("webhooks.fanout_pending")

            # Then its webhook arrives within seconds, while the export is still stuck
            [request] = receiver.wait_for(1, timeout=10)
            assert time.monotonic() - kicked < 5
            assert str(row.event_id) in request.body.decode()
            assert ExportBatch.objects.exists()
        finally:
            os.killpg(worker.pid, signal.SIGKILL)  # a warm shutdown would wait for the hung export calls
            worker.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_recovery_runs_while_every_export_task_hangs(tmp_path):
    """Issue 17, 1b: recovery queued behind export tasks stuck on BigQuery ran only after the load."""
    import datetime as dt
    import uuid

    # Given BigQuery hangs on every call, rows wait for export, and `scripts/worker` runs export and recovery
    EventFactory.create_batch(20, application=ApplicationFactory())
    db = connection.settings_dict
    with _black_hole() as hung_bigquery:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
            "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "TEST_CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "BIGQUERY_PROJECT": "test-proj",
            "BIGQUERY_DATASET": "hung",
            "BIGQUERY_API_ENDPOINT": hung_bigquery,
            "BIGQUERY_TIMEOUT_SECONDS": "20",
            "CELERY_LOG_LEVEL": "info",
        }
        log = tmp_path / "worker.log"
        worker = subprocess.Popen(  # noqa: S603 (our own script)
            [str(REPO / "scripts" / "worker"), "export,recovery"],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _nodes_up({"export", "recovery"}, timeout=90)
            # ... and more export tasks are waiting than there are export processes, each stuck on BigQuery
            for _ in range(6):
                app.send_task("ingest.export_pending", kwargs={"fanout": False})
            deadline = time.monotonic() + 30
            while not ExportBatch.objects.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ExportBatch.objects.exists(), f"export never claimed a batch; see {log}"

            # When a dead worker's batch has run out its lease (with nothing left to ask BigQuery
            # about) and the sweep kicks recovery, as it does every 10 s
            now = timezone.now()
            abandoned = ExportBatch.objects.create(
                id=uuid.uuid4(),
                table="events",
                claimed_at=now - dt.timedelta(seconds=300),
                lease_until=now - dt.timedelta(seconds=120),
            )
            kicked = time.monotonic()
            app.send_task("ingest.export_recover")

            # Then recovery settles it within seconds, while every export process is still stuck
            while ExportBatch.objects.filter(id=abandoned.id).exists() and time.monotonic() - kicked < 15:
                time.sleep(0.1)
            assert not ExportBatch.objects.filter(id=abandoned.id).exists(), f"recovery never ran; see {log}"
            assert time.monotonic() - kicked < 5
            assert ExportBatch.objects.exclude(id=abandoned.id).exists()
        finally:
            os.killpg(worker.pid, signal.SIGKILL)  # a warm shutdown would wait for the hung export calls
            worker.wait(timeout=10)


def _tree(pid: int) -> list[int]:
    """A process and its descendants, parent first (Linux /proc)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


def _heartbeat_age(client, queue: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "saastracker_worker_heartbeat_age_seconds" and sample.labels == {"queue": queue}:
                return sample.value
    return None


def _running(pid: int) -> bool:
    """Whether `pid` still exists as a process that is not a zombie (killed children of a killed
    parent wait for whichever process adopts them to reap them; they no longer run)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_frozen_webhooks_worker_is_restarted_and_delivery_resumes(receiver, tmp_path, client):
    # Given `scripts/worker` runs the webhooks and maintenance roles (beat included), with the
    # staleness bound shortened from 120 s to 8 s and heartbeats every 2 s
    application = ApplicationFactory()
    endpoint_create(company=application.company, url=receiver.url, event_types=["onboarding.started"])
    db = connection.settings_dict
    heartbeats = tmp_path / "heartbeat"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TEST_CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "WORKER_HEARTBEAT_DIR": str(heartbeats),
        "WORKER_HEARTBEAT_SECONDS": "2",
        "WORKER_STALE_SECONDS": "8",
        "WORKER_CHECK_SECONDS": "1",
        "WORKER_START_SECONDS": "90",
        "CELERY_LOG_LEVEL": "warning",
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(  # noqa: S603 (our own script)
        [str(REPO / "scripts" / "worker"), "webhooks,maintenance"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _nodes_up({"webhooks", "maintenance"}, timeout=90)
        # ... and delivers a webhook (the fan-out sweep finds the row)
        SdkEventFactory(application=application, event_name="onboarding_flow_started", webhook_pending=True)
        receiver.wait_for(1, timeout=60)
        frozen_pid = int((heartbeats / "webhooks.pid").read_text())

        # When the webhooks worker's whole process tree is frozen (SIGSTOP), as by a machine stall
        frozen = _tree(frozen_pid)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        rows = SdkEventFactory.create_batch(
            5, application=application, event_name="onboarding_flow_started", webhook_pending=True
        )

        # Then the /metrics gauge shows the queue's heartbeat ageing past the bound,
        ages = []
        while time.monotonic() - stopped_at < 60 and int((heartbeats / "webhooks.pid").read_text()) == frozen_pid:
            ages.append(_heartbeat_age(client, "webhooks") or 0.0)
            time.sleep(0.5)
        assert max(ages) > 6, ages
        # scripts/worker kills the frozen tree and starts a new worker,
        restarted_after = time.monotonic() - stopped_at
        assert int((heartbeats / "webhooks.pid").read_text()) != frozen_pid
        assert "the webhooks worker" in log.read_text()
        assert "killing and restarting it" in log.read_text()
        # and every webhook owed is delivered, by the new worker
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            bodies = b"".join(r.body for r in receiver.requests).decode()
            if all(str(row.event_id) in bodies for row in rows):
                break
            time.sleep(0.2)
        delivered_after = time.monotonic() - stopped_at
        missing = [row.event_id for row in rows if str(row.event_id) not in bodies]
        assert missing == [], (len(receiver.requests), log.read_text()[-3000:])
        assert not any(_running(pid) for pid in frozen)
        # ... and the heartbeat is fresh again
        deadline = time.monotonic() + 30
        while (_heartbeat_age(client, "webhooks") or 99) > 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (_heartbeat_age(client, "webhooks") or 99) <= 5
        print(f"restarted {restarted_after:.1f} s after the freeze, all delivered after {delivered_after:.1f} s")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the frozen tree too (same process group; SIGKILL ends stopped ones)
        worker.wait(timeout=10)
