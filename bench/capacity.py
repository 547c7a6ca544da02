#!/usr/bin/env python3
"""The capacity model, measured: what 1,000 events cost in each part of the system (issue 22, item 5).

    bench/capacity.py [--seconds 15] [--connections 16] [--headroom 0.6]

For each ingest mode (single signed events, SDK batches of 20), on a fresh database:
1. starts `scripts/serve` (prod settings, 2 workers x 16 threads) and drives it with wrk for
   `--seconds`; reads the CPU time of the web processes and of the database's PostgreSQL backends,
   and the growth of the event table's heap (with TOAST) and indexes, of the fold queue, and of the
   WAL (`pg_current_wal_lsn`; the cluster's whole WAL, so run it on a quiet machine);
2. stops the server and exports what was stored to the BigQuery emulator with the production
   exporter (`export_drain`, in one process: its CPU is the export worker's), then folds it into
   the rollups (`fold_drain`: the fold worker's), reading PostgreSQL's CPU during each;
   then reads the table, index and WAL sizes again (the export's updates leave dead row versions);
3. counts the rows BigQuery holds and their bytes (`TO_JSON_STRING` of each row: about what
   `insertAll` sends, without its envelope).
Then prints, per 1,000 events, every figure, and the model: for an event rate R, cores of web,
PostgreSQL and workers at `--headroom` utilisation, and PostgreSQL bytes per day of retention.
A final `BENCH_JSON {...}` line holds the figures. Needs wrk, PostgreSQL (127.0.0.1:5432, trust)
and Redis; starts its own emulator (`scripts/bigquery-emulator`).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import PG, ROOT, free_port, manage, psql, python, stop

from ingest import (
    EVENTS_PER_BATCH,
    TABLES,
    application_new,
    backends_cpu,
    requests_generate,
    server_env,
    server_start,
    shared_bench,
    stored_count,
    tree_cpu,
    wrk_run,
)

DB_NAME = os.environ.get("BENCH_CAPACITY_DB", "bench_capacity")
BQ_PROJECT, BQ_DATASET = "bench-proj", "capacity"
BQ_TABLES = {"single": "events", "batch": "sdk_events"}

# Runs in a process of its own (prod settings, the bench database): its CPU clock is the worker's.
_DRAIN = r"""
import json, sys, time, django
django.setup()
what = sys.argv[1]
cpu, wall = time.process_time(), time.monotonic()
if what == "export":
    from ingest.services.export import export_drain
    moved = 0
    while True:
        report = export_drain(budget_seconds=600)
        moved += report.exported
        if not report.more:
            break
else:
    from analytics.fold import fold_drain
    moved = fold_drain(budget_seconds=600).claimed
cpu, wall = time.process_time() - cpu, time.monotonic() - wall
print("DRAIN_JSON " + json.dumps({"rows": moved, "cpu_s": cpu, "wall_s": wall}))
"""


def database_fresh(env: dict) -> None:
    psql(f"{PG}/postgres", f'drop database if exists "{DB_NAME}" with (force)')
    psql(f"{PG}/postgres", f'create database "{DB_NAME}"')
    manage(env, "migrate", "--noinput")


def sizes(table: str) -> dict[str, int]:
    """Bytes of the table (heap + TOAST), its indexes, the fold queue, and the WAL position."""
    row = psql(
        f"{PG}/{DB_NAME}",
        f"select pg_table_size('{table}'), pg_indexes_size('{table}'),"
        " pg_total_relation_size('analytics_foldqueue'), pg_current_wal_lsn() - '0/0'::pg_lsn",
    )
    heap, indexes, queue, wal = (int(float(x)) for x in row.split("|"))
    return {"heap": heap, "indexes": indexes, "fold_queue": queue, "wal": wal}


def drain(env: dict, what: str) -> dict:
    """Run the exporter or the fold to the end in one process; its CPU and the database's meanwhile."""
    pg_before = backends_cpu(DB_NAME)
    proc = subprocess.Popen(
        [python(), "-c", _DRAIN, what], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak: dict[int, float] = {}
    while proc.poll() is None:  # backends of a short-lived process: sample them while it runs
        peak.update(backends_cpu(DB_NAME))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{what} drain failed:\n{err[-2000:]}")
    line = next(line for line in out.splitlines() if line.startswith("DRAIN_JSON "))
    result = json.loads(line.removeprefix("DRAIN_JSON "))
    result["pg_cpu_s"] = sum(now - pg_before.get(pid, 0.0) for pid, now in peak.items())
    return result


_BIGQUERY_COUNT = r"""
import django, json, sys
django.setup()
from ingest import bigquery
client = bigquery.client_get()
table = bigquery.table_id(bigquery.TABLES[sys.argv[1]])
sql = "SELECT COUNT(*) AS n, SUM(LENGTH(TO_JSON_STRING(t))) AS b FROM `" + table + "` AS t"
row = next(iter(client.query(sql, timeout=120).result(timeout=300)))
print("BQ_JSON " + json.dumps({"rows": row["n"], "bytes": row["b"]}))
"""


def bigquery_figures(env: dict, mode: str) -> dict:
    out = subprocess.run(
        [python(), "-c", _BIGQUERY_COUNT, BQ_TABLES[mode]],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("BQ_JSON ")).removeprefix("BQ_JSON "))


def measure(mode: str, args, env: dict, app: dict, reqdir: Path, workdir: Path) -> dict:
    table = TABLES[mode]
    before = sizes(table)
    stored_before = stored_count(mode, app["app_id"], DB_NAME)
    proc = server_start(env, workdir / f"server-{mode}.log")
    try:
        web_before, pg_before = tree_cpu(proc.pid), backends_cpu(DB_NAME)
        wrk_run(shared_bench(), reqdir, mode, int(env["PORT"]), args)
        time.sleep(0.5)
        web = tree_cpu(proc.pid) - web_before
        pg = sum(now - pg_before.get(pid, 0.0) for pid, now in backends_cpu(DB_NAME).items())
    finally:
        stop(proc)
    events = stored_count(mode, app["app_id"], DB_NAME) - stored_before
    after = sizes(table)
    export, fold = drain(env, "export"), drain(env, "fold")
    settled = sizes(table)  # after export and fold: their updates and queue rows count too
    bq = bigquery_figures(env, mode)
    per_k = 1000 / max(events, 1)
    figures = {
        "events": events,
        "events_per_s": round(events / args.duration),
        "web_cpu_s": web * per_k,
        "pg_ingest_cpu_s": pg * per_k,
        "export_cpu_s": export["cpu_s"] * per_k,
        "pg_export_cpu_s": export["pg_cpu_s"] * per_k,
        "fold_cpu_s": fold["cpu_s"] * per_k,
        "pg_fold_cpu_s": fold["pg_cpu_s"] * per_k,
        "heap_bytes": (after["heap"] - before["heap"]) * per_k,
        "index_bytes": (after["indexes"] - before["indexes"]) * per_k,
        "fold_queue_bytes": (after["fold_queue"] - before["fold_queue"]) * per_k,
        "wal_bytes": (after["wal"] - before["wal"]) * per_k,
        "heap_bytes_settled": (settled["heap"] - before["heap"]) * per_k,
        "index_bytes_settled": (settled["indexes"] - before["indexes"]) * per_k,
        "wal_bytes_settled": (settled["wal"] - before["wal"]) * per_k,
        "exported_rows": export["rows"],
        "bigquery_rows": bq["rows"],
        "bigquery_bytes": (bq["bytes"] or 0) / max(bq["rows"], 1) * 1000,
    }
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def model(figures: dict, headroom: float) -> dict:
    """Cores and bytes for 1,000 events/s (linear in the rate), at `headroom` utilisation."""
    web = figures["web_cpu_s"]
    pg = figures["pg_ingest_cpu_s"] + figures["pg_export_cpu_s"] + figures["pg_fold_cpu_s"]
    workers = figures["export_cpu_s"] + figures["fold_cpu_s"]
    per_day = 1000 * 86400 / 1000  # events per day at 1,000/s, per 1,000 events
    return {
        "web_cores": round(web / headroom, 2),
        "postgres_cores": round(pg / headroom, 2),
        "worker_cores": round(workers / headroom, 2),
        "postgres_gb_per_day": round(
            (figures["heap_bytes_settled"] + figures["index_bytes_settled"]) * per_day / 1e9, 1
        ),
        "wal_gb_per_day": round(figures["wal_bytes_settled"] * per_day / 1e9, 1),
        "bigquery_gb_per_day": round(figures["bigquery_bytes"] * per_day / 1e9, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--headroom", type=float, default=0.6, help="target CPU utilisation of each part")
    args = parser.parse_args()
    wrk_args = SimpleNamespace(threads=4, connections=args.connections, duration=args.seconds)
    bq_port = free_port()
    port = free_port()
    env = server_env(port, DB_NAME)
    env.update(
        BIGQUERY_PROJECT=BQ_PROJECT,
        BIGQUERY_DATASET=BQ_DATASET,
        BIGQUERY_API_ENDPOINT=f"http://127.0.0.1:{bq_port}",
        CELERY_BROKER_URL=env["REDIS_URL"],
    )
    workdir = Path(tempfile.mkdtemp(prefix="saastracker-capacity-"))
    emulator = subprocess.Popen(
        [str(ROOT / "scripts" / "bigquery-emulator"), "start", "--port", str(bq_port), "--project", BQ_PROJECT],
        cwd=ROOT,
        stdout=(workdir / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    results: dict = {}
    try:
        database_fresh(env)
        for _ in range(120):
            try:
                manage(env, "bigquery_setup")
                break
            except subprocess.CalledProcessError:
                time.sleep(1)
        app = application_new(env)
        requests_generate(shared_bench(), workdir / "requests", app, n=200_000, batches=30_000)
        for mode in ("single", "batch"):
            results[mode] = measure(mode, wrk_args, env, app, workdir / "requests", workdir)
            print(f"{mode}: {json.dumps(results[mode])}", flush=True)
    finally:
        stop(emulator)
    load = os.getloadavg()
    print(f"\nper 1,000 events (load average at the end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f})")
    rows = [
        ("events measured", "events", "{:,.0f}"),
        ("ingest rate reached (events/s)", "events_per_s", "{:,.0f}"),
        ("CPU s, web processes", "web_cpu_s", "{:.3f}"),
        ("CPU s, PostgreSQL during ingest", "pg_ingest_cpu_s", "{:.3f}"),
        ("CPU s, export worker", "export_cpu_s", "{:.3f}"),
        ("CPU s, PostgreSQL during export", "pg_export_cpu_s", "{:.3f}"),
        ("CPU s, fold worker", "fold_cpu_s", "{:.3f}"),
        ("CPU s, PostgreSQL during fold", "pg_fold_cpu_s", "{:.3f}"),
        ("bytes, table heap + TOAST", "heap_bytes", "{:,.0f}"),
        ("bytes, table indexes", "index_bytes", "{:,.0f}"),
        ("bytes, fold queue (transient)", "fold_queue_bytes", "{:,.0f}"),
        ("bytes, WAL", "wal_bytes", "{:,.0f}"),
        ("bytes, heap + TOAST after export and fold", "heap_bytes_settled", "{:,.0f}"),
        ("bytes, indexes after export and fold", "index_bytes_settled", "{:,.0f}"),
        ("bytes, WAL of ingest, export and fold", "wal_bytes_settled", "{:,.0f}"),
        ("rows in BigQuery", "bigquery_rows", "{:,.0f}"),
        ("bytes to BigQuery (JSON)", "bigquery_bytes", "{:,.0f}"),
    ]
    print(f"| figure | single | batch (SDK, {EVENTS_PER_BATCH}/request) |\n|---|---|---|")
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(results['single'][key])} | {fmt.format(results['batch'][key])} |")
    models = {mode: model(results[mode], args.headroom) for mode in results}
    print(f"\nfor 1,000 events/s at {args.headroom:.0%} CPU utilisation (scale linearly with the rate):")
    print("| need | single | batch |\n|---|---|---|")
    for key in models["single"]:
        print(f"| {key.replace('_', ' ')} | {models['single'][key]} | {models['batch'][key]} |")
    print("BENCH_JSON " + json.dumps({"figures": results, "model_per_1000_events_per_s": models, "load": load}))
    missing = [m for m in results if results[m]["bigquery_rows"] < results[m]["events"]]
    if missing:
        raise SystemExit(f"not every stored event reached BigQuery: {missing}")


if __name__ == "__main__":
    main()
