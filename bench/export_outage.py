#!/usr/bin/env python3
"""BigQuery restarted without its dataset: how long after it is back until the events sent meanwhile land.

    bench/export_outage.py [--rate 50] [--before 10] [--down 20] [--timeout 240]

What it does, in order:
1. migrates its database (`BENCH_DB_NAME`, default `bench_export_outage`), starts the emulator (in
   memory) with the tables (`manage.py bigquery_setup`) and `scripts/worker` (prod settings, beat on);
2. stores `--rate` events per second (half /v1, half SDK), kicking export once a second as the web
   processes do, for `--before` seconds with BigQuery up, then stops the emulator and keeps sending
   for `--down` seconds;
3. starts the emulator again, in memory, so the dataset and tables are gone (nobody runs
   `bigquery_setup`), keeps sending, and times how long until every event stored while it was down
   is exported;
4. checks BigQuery holds every event exactly once (rows = distinct = stored).
Prints `EXPORT_OUTAGE_JSON {...}`; exit 1 if the events of the outage take 30 s or more to land
(issue 9 item 9) or an event is missing or duplicated.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
if (
    VENV_PY.exists()
    and Path(sys.prefix).resolve() != VENV_PY.parent.parent.resolve()
    and not os.environ.get("BENCH_REEXEC")
):
    os.environ["BENCH_REEXEC"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])  # noqa: S606 (our own venv, same arguments)

from common import PG, free_port, prod_env, stop, worker_start  # noqa: E402 - after the re-exec into the venv
from export import EVENTS_SQL, SDK_SQL  # noqa: E402

DB_NAME = os.environ.get("BENCH_DB_NAME", "bench_export_outage")
BAR_SECONDS = 30.0


def log(msg: str) -> None:
    print(f"[export-outage] {msg}", flush=True)


def emulator_start(port: int, env: dict, log_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "bigquery-emulator"), "start", "--port", str(port), "--project", "bench-proj"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"BigQuery emulator did not start; see {log_path}") from None
            time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=50, help="events/s stored throughout")
    p.add_argument("--before", type=float, default=10.0, help="seconds of load with BigQuery up")
    p.add_argument("--down", type=float, default=20.0, help="seconds BigQuery is down")
    p.add_argument("--timeout", type=float, default=240.0, help="give up this long after BigQuery is back")
    args = p.parse_args()

    bq_port = free_port()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    logs = Path(tempfile.mkdtemp(prefix="bench-export-outage-"))
    env = prod_env(
        db_name=DB_NAME,
        port=0,
        redis_url=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_BEAT_SCHEDULE_FILE=str(logs / "beat-schedule"),
        BIGQUERY_PROJECT="bench-proj",
        BIGQUERY_DATASET="bench",
        BIGQUERY_API_ENDPOINT=f"http://127.0.0.1:{bq_port}",
        CELERY_LOG_LEVEL="info",
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([str(VENV_PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from apps_registry.models import Application, Company, Plan
    from ingest import bigquery
    from saastracker.celery import app as celery_app
    from saastracker.redis_client import get_redis

    get_redis().flushdb()
    company = Company.objects.create(name="Outage bench", plan=Plan.objects.order_by("-events_per_month").first())
    application = Application.objects.create(company=company, name="Outage bench app")
    next_n = 1

    def store(count: int) -> tuple[int, int]:
        """Store `count` pending rows; returns the (first, last) generate_series numbers used."""
        nonlocal next_n
        half = count // 2
        params = {"c": company.pk, "a": application.pk}
        with connection.cursor() as cursor:
            cursor.execute(EVENTS_SQL, {**params, "start": next_n, "stop": next_n + half - 1})
            cursor.execute(SDK_SQL, {**params, "start": next_n, "stop": next_n + (count - half) - 1})
        first = next_n
        next_n += count
        return first, next_n - 1

    def load(seconds: float) -> None:
        """`--rate` events/s for `seconds`, one kick a second (what each web process's kicker does)."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            tick = time.monotonic()
            store(max(2, args.rate // 5))
            if int(tick - start) != int(tick - start - 0.2):
                celery_app.send_task("ingest.export_pending")
            time.sleep(max(0.0, 0.2 - (time.monotonic() - tick)))

    def outage_rows_left(since_id: tuple[int, int]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT count(*) FROM ingest_event WHERE id > %s AND id <= %s AND export_state <> 1)"
                " + (SELECT count(*) FROM ingest_sdkevent WHERE id > %s AND id <= %s AND export_state <> 1)",
                [*since_id[0], *since_id[1]],
            )
            return cursor.fetchone()[0]

    def max_ids() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM ingest_event")
            event = cursor.fetchone()[0]
            cursor.execute("SELECT coalesce(max(id), 0) FROM ingest_sdkevent")
            return event, cursor.fetchone()[0]

    emulator = worker = None
    result: dict = {"rate": args.rate, "down_s": args.down}
    try:
        emulator = emulator_start(bq_port, env, logs / "emulator.log")
        call_command("bigquery_setup", stdout=open(os.devnull, "w"))  # noqa: SIM115
        worker = worker_start(env, logs / "worker.log", celery_app)
        log(f"BigQuery up: {args.rate} events/s for {args.before:g} s")
        load(args.before)
        stop(emulator)
        down_start = max_ids()
        log(f"BigQuery stopped: {args.rate} events/s for {args.down:g} s")
        load(args.down)
        down_end = max_ids()
        outage = (down_start[0], down_end[0]), (down_start[1], down_end[1])
        result["stored_while_down"] = down_end[0] - down_start[0] + down_end[1] - down_start[1]
        log(f"{result['stored_while_down']} events stored while down; restarting BigQuery without its dataset")
        emulator = emulator_start(bq_port, env, logs / "emulator.log")
        back = time.monotonic()
        landed_after = None
        while time.monotonic() - back < args.timeout:
            tick = time.monotonic()
            store(max(2, args.rate // 5))
            if int(tick - back) != int(tick - back - 0.2):
                celery_app.send_task("ingest.export_pending")
            if outage_rows_left(outage) == 0:
                landed_after = time.monotonic() - back
                break
            time.sleep(max(0.0, 0.2 - (time.monotonic() - tick)))
        result["landed_after_s"] = round(landed_after, 1) if landed_after is not None else None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT export_state, count(*) FROM (SELECT export_state FROM ingest_event WHERE id > %s AND id <= %s"
                " UNION ALL SELECT export_state FROM ingest_sdkevent WHERE id > %s AND id <= %s) t GROUP BY 1",
                [*outage[0], *outage[1]],
            )
            result["outage_rows_by_state"] = {str(state): n for state, n in cursor.fetchall()}
        if landed_after is not None:  # let the rest drain, then check exactly-once over everything
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and outage_rows_left(((0, 10**12), (0, 10**12))):
                time.sleep(0.5)
            client = bigquery.client_get()
            landed: list[str] = []
            for name in ("events", "sdk_events"):
                table = bigquery.table_id(bigquery.TABLES[name])
                landed += [r["event_id"] for r in client.query(f"SELECT event_id FROM `{table}`").result()]  # noqa: S608
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT event_id::text FROM ingest_event WHERE id > %s AND id <= %s"
                    " UNION ALL SELECT event_id::text FROM ingest_sdkevent WHERE id > %s AND id <= %s",
                    [*outage[0], *outage[1]],
                )
                owed = {r[0] for r in cursor.fetchall()}
            result.update({"bigquery_rows": len(landed), "bigquery_distinct": len(set(landed))})
            result["outage_rows_missing_in_bigquery"] = len(owed - set(landed))
            result["exactly_once"] = len(landed) == len(set(landed)) and owed <= set(landed)
    finally:
        stop(worker)
        stop(emulator)

    ok = result.get("landed_after_s") is not None and result["landed_after_s"] < BAR_SECONDS and result["exactly_once"]
    result["ok"] = bool(ok)
    result["logs"] = str(logs)
    log(
        f"events stored while BigQuery was down: all exported {result['landed_after_s']} s after it came back "
        f"(bar < {BAR_SECONDS:g} s); states then {result.get('outage_rows_by_state')}; "
        f"exactly once: {result.get('exactly_once')} {'PASS' if ok else 'FAIL'}"
    )
    print("EXPORT_OUTAGE_JSON " + json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
