#!/usr/bin/env python3
"""Export throughput into the BigQuery emulator with production settings, and export lag after a load.

    bench/export.py [--events 200000] [--ingest-rate 6000] [--ingest-seconds 30] [--skip-lag]

What it does, in order:
1. creates/migrates the PostgreSQL database `bench_export`, a company and an application, and fills
   the outbox with `--events` pending rows (half /v1 events, half SDK events) in two
   `INSERT ... SELECT generate_series` statements;
2. starts the emulator (`scripts/bigquery-emulator start`, in memory, free port), runs
   `manage.py bigquery_setup`, and starts `scripts/worker` (prod settings, 2 worker processes,
   no beat);
3. publishes one `ingest.export_pending` (as the web kicker does) and measures events/s until no
   row is pending or sending; checks BigQuery holds every row exactly once (count = distinct);
4. unless --skip-lag: inserts rows at `--ingest-rate` events/s for `--ingest-seconds` (the batch
   ingest benchmark's rate), kicking export once a second as web processes do, then measures how
   long until the export lag is back to zero; checks exactly-once again.
Prints a final `BENCH_JSON {...}`; exit status 1 if a figure misses its bar or a row is missing
or duplicated. Needs PostgreSQL (127.0.0.1:5432, trust) and Redis (127.0.0.1:6379).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
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

from common import PG, free_port, stop, worker_start  # noqa: E402 - after the re-exec into the venv

DB_NAME = os.environ.get("BENCH_EXPORT_DB", "bench_export")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
OUT = ROOT / "bench" / "out"
BAR_EVENTS_PER_S = 5000
BAR_LAG_SECONDS = 60


def log(msg: str) -> None:
    print(f"[export-bench] {msg}", flush=True)


def database_create() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def base_env(bq_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.prod",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "FIELD_ENCRYPTION_KEY": "2W5mE6bY1pQh0oBvV2c8i2nJcQ1w3m9y3r0uGZQpX1k=",
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "BIGQUERY_PROJECT": "bench-proj",
        "BIGQUERY_DATASET": "bench",
        "BIGQUERY_API_ENDPOINT": f"http://127.0.0.1:{bq_port}",
        "LOG_LEVEL": "WARNING",
        "METRICS_LOOPBACK_ALLOWED": "1",
        "CELERY_LOG_LEVEL": "warning",
        "CELERY_BEAT": "0",
        "CELERY_CONCURRENCY": "2",
    }


EVENTS_SQL = """
INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts, export_error,
    webhook_pending, event_id, event, user_hash, customer_org_id, path, session_id, session_inferred, plan,
    environment, occurred_at, properties)
SELECT %(c)s, %(a)s, now(), 0, 0, '', false, gen_random_uuid(), 'page_view', md5(n::text) || md5((n + 1)::text),
    'org_' || (n %% 500), '/page/' || (n %% 50), gen_random_uuid(), n %% 3 = 0, 'pro', 'production',
    now() - (n || ' ms')::interval, jsonb_build_object('n', n, 'plan', 'pro', 'flag', n %% 2 = 0)
FROM generate_series(%(start)s, %(stop)s) n
"""
SDK_SQL = """
INSERT INTO ingest_sdkevent (company_id, application_id, received_at, export_state, export_attempts, export_error,
    webhook_pending, event_id, schema_version, event_name, ts_ms, occurred_at, anon_id, user_id, platform, os,
    app_version, sdk_version, locale, bundle_version, country, session_id, properties, consent_analytics)
SELECT %(c)s, %(a)s, now(), 0, 0, '', false, gen_random_uuid(), 1, 'screen_view',
    (extract(epoch from now()) * 1000)::bigint - n, now() - (n || ' ms')::interval, gen_random_uuid(),
    'user_' || (n %% 1000), 'ios', '17.0', '1.2.3', '2.0.0', 'en_US', 3, 'US', gen_random_uuid(),
    jsonb_build_object('screen', 'home', 'n', n), true
FROM generate_series(%(start)s, %(stop)s) n
"""


def outbox_fill(app, start: int, count: int) -> None:
    from django.db import connection

    half = count // 2
    params = {"c": app.company_id, "a": app.id}
    with connection.cursor() as cursor:
        cursor.execute(EVENTS_SQL, {**params, "start": start, "stop": start + half - 1})
        cursor.execute(SDK_SQL, {**params, "start": start, "stop": start + (count - half) - 1})


def unexported() -> int:
    from ingest.services.export import export_status_get

    status = export_status_get()
    return status.pending_count + status.sending_count


TABLE_STATS_SQL = """
SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0),
    coalesce(sum(n_dead_tup), 0), coalesce(sum(autovacuum_count + vacuum_count), 0)
FROM pg_stat_user_tables WHERE relname IN ('ingest_event', 'ingest_sdkevent', 'ingest_identifylink')
"""


def table_stats() -> dict[str, int]:
    """Row writes of the event tables so far (cumulative; the statistics are flushed within a second)."""
    from django.db import connection

    time.sleep(1.5)  # backends flush their table statistics at most once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(TABLE_STATS_SQL)
        ins, upd, hot, dead, vacuums = (int(v) for v in cursor.fetchone())  # sum() of bigint is numeric
    return {"inserted": ins, "updated": upd, "hot_updated": hot, "dead": dead, "vacuums": vacuums}


def writes_per_event(before: dict[str, int], after: dict[str, int], events: int) -> dict[str, float]:
    """Updates and dead tuples of the event tables per stored event (bar: <= 0.05 each)."""
    return {
        "updates_per_event": round((after["updated"] - before["updated"]) / events, 4),
        "hot_updates_per_event": round((after["hot_updated"] - before["hot_updated"]) / events, 4),
        "dead_per_event": round((after["dead"] - before["dead"]) / events, 4),
        "vacuums": after["vacuums"] - before["vacuums"],
    }


def bigquery_counts() -> dict[str, dict[str, int]]:
    from ingest import bigquery

    client = bigquery.client_get()
    out = {}
    for name in ("events", "sdk_events"):
        sql = f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM `{bigquery.table_id(bigquery.TABLES[name])}`"  # noqa: S608
        row = next(iter(client.query(sql, timeout=60).result(timeout=120)))
        out[name] = {"rows": row["n"], "distinct": row["d"]}
    return out


def wait_drained(timeout: float, poll: float = 0.25) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if unexported() == 0:
            return time.monotonic() - start
        time.sleep(poll)
    raise SystemExit(f"export did not drain within {timeout}s ({unexported()} rows left)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--ingest-rate", type=int, default=6000, help="events/s during the lag phase")
    p.add_argument("--ingest-seconds", type=int, default=30)
    p.add_argument("--skip-lag", action="store_true")
    p.add_argument(
        "--emulator-no-time-travel",
        action="store_true",
        help="diagnostic: stop the emulator copying the table into a snapshot after every insert call",
    )
    args = p.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup in `finally`
    bq_port = free_port()
    env = base_env(bq_port)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    log(f"database {DB_NAME}: create and migrate")
    database_create()
    subprocess.run([str(VENV_PY), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from django.core.management import call_command

    from apps_registry.models import Application, Company, Plan
    from saastracker.celery import app as celery_app
    from saastracker.redis_client import get_redis

    get_redis().flushdb()  # the broker database of this bench: no stale tasks
    plan = Plan.objects.order_by("-events_per_month").first()
    company = Company.objects.create(name="Export bench", plan=plan)
    application = Application.objects.create(company=company, name="Export bench app")

    t = time.monotonic()
    outbox_fill(application, 1, args.events)
    fill_s = time.monotonic() - t
    log(f"outbox filled with {args.events} pending rows in {fill_s:.1f}s")

    emulator = worker = None
    result: dict = {
        "events": args.events,
        "fill_seconds": round(fill_s, 1),
        "emulator_time_travel": not args.emulator_no_time_travel,
    }
    try:
        emulator = subprocess.Popen(
            [str(ROOT / "scripts" / "bigquery-emulator"), "start", "--port", str(bq_port), "--project", "bench-proj"]
            + (["--no-time-travel"] if args.emulator_no_time_travel else []),
            cwd=ROOT,
            env=env,
            stdout=(OUT / "export-emulator.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{bq_port}/readyz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or emulator.poll() is not None:
                    raise SystemExit("BigQuery emulator did not start; see bench/out/export-emulator.log") from None
                time.sleep(0.2)
        call_command("bigquery_setup")

        worker = worker_start(env, OUT / "export-worker.log", celery_app)
        log("emulator and worker (2 processes) up; kicking export")

        stats_before = table_stats()
        celery_app.send_task("ingest.export_pending")
        drain_s = wait_drained(timeout=600)
        rate = args.events / drain_s
        counts = bigquery_counts()
        total = sum(c["rows"] for c in counts.values())
        distinct = sum(c["distinct"] for c in counts.values())
        writes = writes_per_event(stats_before, table_stats(), args.events)
        log(f"throughput: {args.events} rows in {drain_s:.1f}s = {rate:.0f} events/s; BigQuery {counts}")
        log(f"event tables during the drain: {writes} (load average {os.getloadavg()})")
        result.update(
            {
                "drain_seconds": round(drain_s, 1),
                "events_per_s": round(rate),
                "bigquery_rows": total,
                "bigquery_distinct": distinct,
                "exactly_once": total == distinct == args.events,
                **writes,
                "load_average": os.getloadavg(),
            }
        )

        if not args.skip_lag:
            lag_stats_before = table_stats()
            per_tick = max(2, args.ingest_rate // 10)
            inserted = 0
            next_id = args.events + 1
            start = time.monotonic()
            last_kick = 0.0
            max_backlog = 0
            while time.monotonic() - start < args.ingest_seconds:
                tick = time.monotonic()
                outbox_fill(application, next_id, per_tick)
                next_id += per_tick
                inserted += per_tick
                if tick - last_kick >= 1.0:
                    celery_app.send_task("ingest.export_pending")  # what each web process's kicker does
                    last_kick = tick
                    max_backlog = max(max_backlog, unexported())
                time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
            load_s = time.monotonic() - start
            achieved = inserted / load_s
            backlog_at_stop = unexported()
            catch_up_s = wait_drained(timeout=300, poll=0.2)
            lag_writes = writes_per_event(lag_stats_before, table_stats(), inserted)
            log(f"event tables while ingesting and exporting: {lag_writes} (load average {os.getloadavg()})")
            counts = bigquery_counts()
            total = sum(c["rows"] for c in counts.values())
            distinct = sum(c["distinct"] for c in counts.values())
            expected = args.events + inserted
            log(
                f"lag: {inserted} rows at {achieved:.0f} events/s for {load_s:.0f}s; backlog at stop "
                f"{backlog_at_stop}, max backlog {max_backlog}; lag back to zero {catch_up_s:.1f}s after the load "
                f"stopped; BigQuery {total} rows, {distinct} distinct, expected {expected}"
            )
            result.update(
                {
                    "lag_ingest_events_per_s": round(achieved),
                    "lag_ingest_seconds": round(load_s),
                    "lag_backlog_at_stop": backlog_at_stop,
                    "lag_max_backlog": max_backlog,
                    "lag_zero_after_seconds": round(catch_up_s, 1),
                    "lag_exactly_once": total == distinct == expected,
                    **{f"lag_{k}": v for k, v in lag_writes.items()},
                }
            )
    finally:
        stop(worker)
        stop(emulator)

    ok = result.get("exactly_once") and result.get("events_per_s", 0) >= BAR_EVENTS_PER_S
    if not args.skip_lag:
        ok = ok and result.get("lag_exactly_once") and result.get("lag_zero_after_seconds", 1e9) <= BAR_LAG_SECONDS
    result["ok"] = bool(ok)
    print("BENCH_JSON " + json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
