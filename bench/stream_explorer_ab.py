#!/usr/bin/env python3
"""The stream's and the explorer's statements on two or more databases, alternating in one process.

    bench/stream_explorer_ab.py DB1,DB2[,...] [--set "random_page_cost = 1.1"] [--stream-runs 300] [--explorer-runs 12]
                                [--stream-read first|unbounded]

Each database is one of `bench/analytics_stream_explorer.py generate --db ...` (same data set, e.g.
a plain and a partitioned schema). For each, a child process renders the exact statements the views
run (the stream's first page and a page 10,000 events back, each as the page's first read: on
partitioned tables bounded to its recent weeks, unless `--stream-read unbounded`; the explorer's
30-day daily count by event and distinct users per day; literal values inlined as the client-side
binding sends them); then one connection per database runs them in turn, alternating the order
each round, under the explorer's session settings (no JIT, 64 MB work_mem, no parallel workers) plus `--set`. Printed:
p50/p95 per statement and database, and the 1-minute load average. Alternating in one process puts
both schemas under the same load, which a shared machine's separate runs do not.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import PG, ROOT, prod_env, python

# Runs in a child with prod settings on one database: prints {name: statement text}.
_RENDER = """
import json, sys, time
import django
django.setup()
from django.db import connection
from django.test import Client
from analytics.query import query_compile
from analytics.query.validation import query_parse
from analytics import stream
from analytics.stream import stream_sql
from apps_registry.models import Application
partitioned = "ingest_rawpartition" in connection.introspection.table_names()
if not partitioned or sys.argv[2] == "unbounded":  # a plain schema has no registry: pages read the one table
    stream.recent_floor = lambda source, before: None
meta = json.loads(open(sys.argv[1]).read())
app = Application.objects.get(uuid=meta["app_uuid"])
client = Client(HTTP_AUTHORIZATION=f"Bearer {meta['key']}")
base = f"/api/v1/analytics/apps/{meta['app_uuid']}"
cursor = client.get(f"{base}/stream?source=events&limit=200").json()["next"]
for _ in range(49):
    cursor = client.get(f"{base}/stream?source=events&limit=200&before={cursor}").json()["next"]
now, day = time.time(), 86400
start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - 31 * day))
end = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - day))
by_event = {"source": "events", "measure": "events", "from": start, "to": end, "interval": "day",
            "group_by": ["event"], "limit": 10000}
users = {"source": "events", "measure": "users", "from": start, "to": end, "interval": "day"}
def first_read(before):  # what a page reads first: on partitioned tables, its recent week(s) alone
    floor = stream.recent_floor("events", before)
    ids = (floor.below, None) if floor else (None, None)
    return stream_sql(app=app, source="events", limit=200, before=before, ids=ids)
with connection.cursor() as c:
    print(json.dumps({name: c.cursor.mogrify(sql, params) for name, (sql, params) in {
        "stream_first_page": first_read(None),
        "stream_page_10000_back": first_read(cursor),
        "explorer_daily_count_by_event_30d": query_compile(app=app, query=query_parse(by_event), engine="postgres"),
        "explorer_daily_users_30d": query_compile(app=app, query=query_parse(users), engine="postgres"),
    }.items()}))
"""


def statements(db: str, stream_read: str) -> dict[str, str]:
    from analytics_stream_explorer import meta_path

    env = prod_env(db_name=db, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    out = subprocess.run(
        [python(), "-c", _RENDER, str(meta_path(db)), stream_read],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dbs", help="comma-separated database names")
    parser.add_argument(
        "--set", dest="setting", default="", help='one more session setting, e.g. "random_page_cost = 1.1"'
    )
    parser.add_argument(
        "--stream-read",
        choices=["first", "unbounded"],
        default="first",
        help="the stream statement: a page's first read (its recent weeks, as served), or over every partition",
    )
    parser.add_argument("--stream-runs", type=int, default=300)
    parser.add_argument("--explorer-runs", type=int, default=12)
    args = parser.parse_args()
    import psycopg

    dbs = args.dbs.split(",")
    texts = {db: statements(db, args.stream_read) for db in dbs}
    conns = {db: psycopg.connect(f"{PG}/{db}", autocommit=True) for db in dbs}
    for conn in conns.values():
        conn.execute("SET jit = off; SET work_mem = '64MB'; SET max_parallel_workers_per_gather = 0")
        if args.setting:
            conn.execute(f"SET {args.setting}")
    results: dict[str, dict] = {}
    for name in texts[dbs[0]]:
        runs = args.stream_runs if name.startswith("stream") else args.explorer_runs
        if not runs:
            continue
        samples: dict[str, list[float]] = {db: [] for db in dbs}
        for db in dbs:  # warm-up
            conns[db].execute(texts[db][name]).fetchall()
        for i in range(runs):
            for db in dbs if i % 2 == 0 else dbs[::-1]:
                started = time.perf_counter()
                conns[db].execute(texts[db][name]).fetchall()
                samples[db].append((time.perf_counter() - started) * 1000)
        load = os.getloadavg()[0]
        results[name] = {
            db: {"p50_ms": round(statistics.median(s), 2), "p95_ms": round(percentile(s, 95), 2)}
            for db, s in samples.items()
        }
        figures = "  ".join(f"{db}: p50 {r['p50_ms']:8.2f} p95 {r['p95_ms']:8.2f}" for db, r in results[name].items())
        print(f"{name:34} {figures}  load {load:.2f}", flush=True)
    print("AB_JSON " + json.dumps({"setting": args.setting, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
