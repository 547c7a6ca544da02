#!/usr/bin/env python3
"""Event stream and Event explorer at 10 million stored events: p95 latencies and the plans behind them.

    bench/analytics_stream_explorer.py generate [--events 10000000] [--days 90] [--db explorer_bench]
    bench/analytics_stream_explorer.py run [--runs 20] [--explain] [--only stream|explorer]

`generate` (re)creates the PostgreSQL database `explorer_bench` with the shared analytics data set
(`bench/analytics_data.py`'s `generate`: N `/v1/events` rows over the last D days, 1,000 orgs,
50,000 users, 20 event names), adds a member with a personal API key, CLUSTERs the heap in receive
order (as a live table's is) and runs VACUUM ANALYZE (so index-only scans skip the heap, as
autovacuum lets them on a live table).

`run` times, in process through the real views (Django test client, personal API key, prod settings
pointed at the bench database):
- the stream's first page (200 events) and a page 10,000 events back (50 cursors followed first);
- the explorer on PostgreSQL: a 30-day daily count grouped by event, and distinct users per day
  over 30 days;
each as p50/p95 of `--runs` runs after one warm-up, then prints `EXPLAIN (ANALYZE, BUFFERS)` of each
statement with `--explain`. A file lock keeps two benchmarks from overlapping. The machine is
shared: the bare `SELECT 1` round trip of the same run is printed as the baseline.
"""

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import PG, ROOT, prod_env, psql

DB_NAME = "explorer_bench"
DSN = f"{PG}/{DB_NAME}"
META = Path(tempfile.gettempdir()) / "explorer-bench.json"


def django_env(db: str = DB_NAME) -> dict:
    """The production settings pointed at the bench database (no server is started: port unused)."""
    return prod_env(db_name=db, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))


def generate(args: argparse.Namespace) -> None:
    """The shared data set (`bench/analytics_data.py`) in `explorer_bench`, a member with a personal key,
    then VACUUM ANALYZE: the visibility map lets index-only scans skip the heap, as autovacuum does live."""
    from analytics_data import generate as data_generate

    started = time.monotonic()
    data = data_generate(db=args.db, events=args.events, days=args.days)
    print(
        f"inserted {args.events:,} events in {data['insert_seconds']:.0f} s (migrated and set up in "
        f"{time.monotonic() - started - data['insert_seconds']:.0f} s)"
    )
    os.environ.update(django_env(args.db))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()

    from apps_registry.models import Application

    meta_path(args.db).write_text(json.dumps(member_key(Application.objects.get(uuid=data["app_uuid"]))))
    # A live table's heap is in receive order (rows are appended as they arrive), so a stream page's
    # 200 newest rows share a dozen heap pages. The shared generator writes rows day-interleaved
    # (row i is on day i % days), which puts them on 200 different pages: CLUSTER restores the live
    # layout (measured: the page's statement 9.4 ms and 206 buffers before, 2.6 ms and 12 after).
    started = time.monotonic()
    dsn = f"{PG}/{args.db}"
    # Two commands of one session, not one string: CLUSTER of a partitioned table refuses a transaction block.
    subprocess.run(
        [
            "psql",
            dsn,
            "-qAt",
            "-c",
            "set maintenance_work_mem = '1GB'",
            "-c",
            "cluster ingest_event using event_app_received",
        ],
        check=True,
    )
    psql(dsn, "vacuum analyze ingest_event")
    print(f"cluster, vacuum analyze in {time.monotonic() - started:.0f} s")


def meta_path(db: str) -> Path:
    """Where `generate` keeps the bench member's key for `db` (`run` reads it, or makes one)."""
    return META if db == DB_NAME else Path(tempfile.gettempdir()) / f"explorer-bench-{db}.json"


def member_key(app: Any) -> dict:
    """A member of `app`'s company with a fresh personal API key (the bench's own user)."""
    from django.contrib.auth import get_user_model

    from analytics.models import PersonalApiKey
    from analytics.services import personal_key_create
    from apps_registry.models import Membership

    user, _ = get_user_model().objects.get_or_create(username="explorer-bench")
    Membership.objects.get_or_create(user=user, company=app.company, defaults={"role": Membership.Role.MEMBER})
    PersonalApiKey.objects.filter(user=user).delete()
    _, raw = personal_key_create(user=user, name="bench")
    return {"app_uuid": str(app.uuid), "key": raw}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn: Callable[[], object], runs: int) -> dict:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "max_ms": round(max(samples), 1),
        "runs": runs,
        "load_1m": round(os.getloadavg()[0], 2),
    }


def run(args: argparse.Namespace) -> None:
    os.environ.update(django_env(args.db))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    path = meta_path(args.db)
    if not path.exists():  # another database of the shared data set (one app): a bench member and key of its own
        from apps_registry.models import Application

        path.write_text(json.dumps(member_key(Application.objects.get())))
    meta = json.loads(path.read_text())
    client = Client(HTTP_AUTHORIZATION=f"Bearer {meta['key']}")
    base = f"/api/v1/analytics/apps/{meta['app_uuid']}"

    def get(url: str) -> dict:
        response = client.get(url)
        assert response.status_code == 200, response.content[:500]
        return response.json()

    def post(body: dict) -> dict:
        response = client.post(f"{base}/query", body, content_type="application/json")
        assert response.status_code == 200, response.content[:500]
        return response.json()

    def select_one() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    results: dict[str, dict] = {"baseline_select_1": timed(select_one, args.runs * 5)}
    first_url = f"{base}/stream?source=events&limit=200"
    cursor = get(first_url)["next"]
    for _ in range(49):
        cursor = get(f"{base}/stream?source=events&limit=200&before={cursor}")["next"]
    back_url = f"{base}/stream?source=events&limit=200&before={cursor}"

    def served(url: str) -> None:
        """The server's time only: the page is answered, not decoded (as the pages benchmark times)."""
        response = client.get(url)
        assert response.status_code == 200, response.content[:500]

    if args.only in (None, "stream"):
        results["stream_first_page"] = timed(lambda: served(first_url), args.runs * 5)
        results["stream_page_10000_back"] = timed(lambda: served(back_url), args.runs * 5)

    now = time.time()
    day = 86400
    # past: the 30 whole days before yesterday's end; recent: the 30 days ending with today, the window the
    # rollup path may answer when retention is 30 days (a `from` before the retention cutoff goes raw).
    first, last = (31, 1) if args.window == "past" else (29, -1)
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - first * day))
    end = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - last * day))
    by_event = {
        "source": "events",
        "measure": "events",
        "from": start,
        "to": end,
        "interval": "day",
        "group_by": ["event"],
        "limit": 10000,
    }
    users = {"source": "events", "measure": "users", "from": start, "to": end, "interval": "day"}
    if args.only in (None, "explorer"):
        results["explorer_daily_count_by_event_30d"] = timed(lambda: post(by_event), args.runs)
        results["explorer_daily_users_30d"] = timed(lambda: post(users), args.runs)
        rows = post(by_event)["rows"]
        results["explorer_daily_count_by_event_30d"]["rows"] = len(rows)
        results["explorer_daily_count_by_event_30d"]["events_counted"] = sum(r[-1] for r in rows)
        results["explorer_daily_users_30d"]["user_days"] = sum(r[-1] for r in post(users)["rows"])
    for name, figures in results.items():
        print(f"{name:40} {figures}")
    print("BENCH_JSON " + json.dumps(results))
    if args.explain:
        explain(meta, first_url, back_url, by_event, users)


def explain(meta: dict, first_url: str, back_url: str, by_event: dict, users: dict) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact statements the endpoints run."""
    from django.db import connection

    from analytics.query import query_compile
    from analytics.query.engines import postgres_settings_apply
    from analytics.query.validation import query_parse
    from analytics.stream import recent_floor, stream_sql
    from apps_registry.models import Application

    app = Application.objects.get(uuid=meta["app_uuid"])

    def first_read(before: str | None) -> tuple[str, list]:
        """What a page reads first: its recent week(s) alone (analytics/stream.py)."""
        floor = recent_floor("events", before)
        ids = (floor.below, None) if floor else (None, None)
        return stream_sql(app=app, source="events", limit=200, before=before, ids=ids)

    with connection.cursor() as cursor:
        # The explorer's own session settings (analytics/query/engines.py), for the plans to match.
        postgres_settings_apply(cursor, is_local=False)
        for title, (sql, params) in {
            "stream, first page": first_read(None),
            "stream, 10,000 back": first_read(back_url.rsplit("before=", 1)[1]),
            "explorer, 30-day daily count by event": query_compile(
                app=app, query=query_parse(by_event), engine="postgres"
            ),
            "explorer, 30-day daily distinct users": query_compile(
                app=app, query=query_parse(users), engine="postgres"
            ),
        }.items():
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            print(f"\n-- {title}\n" + "\n".join(row[0] for row in cursor.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--events", type=int, default=10_000_000)
    gen.add_argument("--days", type=int, default=90)
    gen.add_argument("--db", default=DB_NAME, help="the database to (re)create")
    bench = sub.add_parser("run")
    bench.add_argument("--runs", type=int, default=20)
    bench.add_argument("--explain", action="store_true")
    bench.add_argument("--only", choices=["stream", "explorer"], help="time only this part")
    bench.add_argument("--db", default=DB_NAME, help="a database of the same data set (e.g. analytics_bench)")
    bench.add_argument("--window", choices=["past", "recent"], default="past", help="the explorer's 30 days")
    args = parser.parse_args()
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    with open(lock_path, "w") as lock:
        # `generate` times nothing, but 10 M INSERTs would skew another benchmark's figures: it locks too.
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another benchmark holds the lock; waiting", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.command == "generate":
            generate(args)
        else:
            run(args)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
