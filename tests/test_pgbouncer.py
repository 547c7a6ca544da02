"""Web and workers through a real PgBouncer (Debian's 1.18) in transaction pooling mode.

`DATABASE_POOLER=pgbouncer` turns off what cannot outlive a transaction on one server connection
(named prepared statements of the ingest hot path, named server-side cursors). The end-to-end test
runs the production server and `scripts/worker` (every role, beat included) against a pooler whose
pool is smaller than the number of client connections, so consecutive transactions of one client
land on different server connections: a statement prepared on one would be unknown on the next.
"""

import gzip
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Sum

from analytics.fold import unfolded_count
from analytics.models import ALL_ENVIRONMENTS, DailyTotal
from ingest.models import Event, ExportState, SdkEvent
from tests.export_ledger import in_state
from tests.factories import ApiSecretFactory, ApplicationFactory, SdkKeyFactory
from tests.ingest.sdk_helpers import sdk_event
from tests.ingest.v1_helpers import event_body, sign
from webhooks.services import endpoint_create

from .fixtures.pgbouncer import PgBouncer, pgbouncer_missing
from .fixtures.serve import http, serve_start, serve_stop

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(pgbouncer_missing() is not None, reason=pgbouncer_missing() or "")


def _settings_with(**env: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "d = s.DATABASES['default']; print(json.dumps({'cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', False), "
        "'prepare': d['OPTIONS'].get('prepare_threshold', 'unset')}))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [str(REPO / ".venv" / "bin" / "python"), "-c", code],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "saastracker.settings.test", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_pooler_setting_turns_off_what_transaction_pooling_breaks():
    assert _settings_with(DATABASE_POOLER="pgbouncer") == {"cursors": True, "prepare": None}
    assert _settings_with(DATABASE_POOLER="")["cursors"] is False


def test_an_unknown_pooler_is_refused_at_startup():
    with pytest.raises(subprocess.CalledProcessError) as exc:
        _settings_with(DATABASE_POOLER="pgpool")
    assert "DATABASE_POOLER='pgpool'" in exc.value.stderr


@pytest.fixture
def pooler(transactional_db):
    """PgBouncer in transaction mode with 2 server connections, in front of the test database's server."""
    db = connection.settings_dict
    bouncer = PgBouncer(
        host=db["HOST"] or "127.0.0.1", port=int(db["PORT"] or 5432), user=db["USER"] or "postgres", pool_size=2
    )
    try:
        bouncer.start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"pgbouncer could not start here: {exc}")
    try:
        yield bouncer
    finally:
        bouncer.stop()


def _server_connections_to(dbname: str, *, besides: list[int] | None = None) -> int:
    """Server connections PostgreSQL has open to `dbname`, other than this test's own and `besides`
    (those open before the test started: other fixtures of the session, e.g. a live server)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> ALL(%s)",
            [dbname, besides or []],
        )
        return cursor.fetchone()[0]


def _connection_pids(dbname: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [dbname])
        return [pid for (pid,) in cursor.fetchall()]


@pytest.mark.slow
def test_ingest_export_fold_and_webhooks_work_through_pgbouncer(pooler, bigquery, receiver, tmp_path):
    # Given an app with a secret, an SDK key and a webhook endpoint, the production server and
    # `scripts/worker` (every role, beat included) whose DATABASE_URL is a 2-connection PgBouncer
    app = ApplicationFactory()
    secret = ApiSecretFactory(application=app).secret
    key = SdkKeyFactory(application=app).raw_key
    endpoint_create(company=app.company, url=receiver.url, event_types=["onboarding.started"])
    dbname = connection.settings_dict["NAME"]
    already_open = _connection_pids(dbname)
    through_pooler = {"DATABASE_URL": pooler.url(dbname), "DATABASE_POOLER": "pgbouncer"}
    proc, server = serve_start(tmp_path, workers=2, **through_pooler)
    worker_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "TEST_CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "WORKER_HEARTBEAT_DIR": str(tmp_path / "heartbeat"),
        "CELERY_LOG_LEVEL": "info",
        **bigquery.env(),
        **through_pooler,
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(  # noqa: S603 - our own script
        [str(REPO / "scripts" / "worker")],
        cwd=REPO,
        env=worker_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # When 40 signed single events (8 at a time, over both server processes) and 10 SDK batches
        # of 5 (one an onboarding start) arrive
        def single(i: int) -> int:
            body = event_body(customer_org_id=f"org_{i % 4}")
            headers = {
                "Content-Type": "application/json",
                "x-app-uuid": str(app.uuid),
                "x-signature": sign(secret, body),
            }
            if i % 5 == 0:  # some with an Idempotency-Key: the claim statement goes through the pooler too
                headers["Idempotency-Key"] = f"key-{i}"
            return http(server, "/v1/events", method="POST", body=body, headers=headers)[0]

        def batch(i: int) -> int:
            events = [sdk_event() for _ in range(4)] + [
                sdk_event(event_name="onboarding_flow_started" if i == 0 else "screen_view")
            ]
            body = gzip.compress(json.dumps({"events": events}).encode())
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "x-api-key": key}
            return http(server, "/api/v1/ingest/events", method="POST", body=body, headers=headers)[0]

        with ThreadPoolExecutor(8) as pool:
            singles = list(pool.map(single, range(40)))
            batches = list(pool.map(batch, range(10)))

        # Then every request is accepted and stored once
        assert singles == [202] * 40, server.log_text()[-3000:]
        assert set(batches) <= {200, 202}, server.log_text()[-3000:]
        assert Event.objects.filter(application=app).count() == 40
        assert SdkEvent.objects.filter(application=app).count() == 50

        # ... the webhook arrives (fan-out and delivery through the pooler)
        [request] = receiver.wait_for(1, timeout=60)
        assert b"onboarding.started" in request.body

        # ... every row is exported exactly once and folded into the rollups
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            exported = in_state(Event, ExportState.EXPORTED).count()
            exported += in_state(SdkEvent, ExportState.EXPORTED).count()
            folded = unfolded_count() == 0
            if exported == 90 and folded:
                break
            time.sleep(0.5)
        assert exported == 90, log.read_text(errors="replace")[-3000:]
        assert bigquery.count("events") == 40
        assert bigquery.count("sdk_events") == 50
        totals = DailyTotal.objects.filter(application=app, environment=ALL_ENVIRONMENTS)
        assert totals.filter(source="events").aggregate(n=Sum("events"))["n"] == 40
        assert totals.filter(source="sdk_events").aggregate(n=Sum("events"))["n"] == 50

        # ... and no client saw the error a prepared statement on another server connection gives
        logs = server.log_text() + log.read_text(errors="replace")
        assert "prepared statement" not in logs
        # ... while the pool stayed small: never more than its 2 server connections to the test database
        assert _server_connections_to(dbname, besides=already_open) <= 2
    finally:
        serve_stop(proc)
        if worker.poll() is None:
            os.killpg(worker.pid, 9)
            worker.wait(timeout=10)
