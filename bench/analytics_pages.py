#!/usr/bin/env python3
"""The analytics pages' server time at 10 million stored events: p50/p95 per page, and the stream poll's queries.

    bench/analytics_pages.py [--db analytics_bench] generate [--events 10000000] [--days 90]
    bench/analytics_pages.py [--db analytics_bench] prepare
    bench/analytics_pages.py [--db analytics_bench] run [--runs 20] [--explain]

The data set is the analytics benchmark's (`bench/analytics_data.py`: 1,000 orgs, 50,000 users,
20 event names, 50 paths, a tenth of the users on `staging`, generated with SQL). `generate` makes
it and folds it (`analytics_data.fold_all`, the worker's fold); `prepare` only adds what the pages
need to a database that `bench/analytics_data.py --fold` already made: a member to log in as, five
features and one health scan.

`run` renders every page in process through the real views and templates (Django test client,
a logged-in member, the production settings pointed at the bench database), each `--runs` times
after one warm-up, and prints p50/p95 of the server time: overview (30 and 90 days), pages, a
page's trend, features, organizations (default sort and sorted by health), an organization, the
event stream, one stream poll, the explorer's form and the explorer with a 30-day daily query.
It also counts the SQL statements of one stream poll and prints `EXPLAIN (ANALYZE, BUFFERS)` of
the one that reads events with `--explain`. A file lock keeps two benchmarks from overlapping. The
machine is shared: the bare `SELECT 1` round trip of the same run is printed as the baseline.
"""

import argparse
import fcntl
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import analytics_data
from common import ROOT, prod_env

BAR_MS = 200

# Defined on the vocabulary of bench/analytics_data.py's data set.
FEATURES = {
    "Reports": (["report_run", "export_csv"], []),
    "Search": (["search"], []),
    "Billing": (["billing_viewed"], ["/section/3"]),
    "Integrations": (["integration_connected", "api_key_created"], []),
    "Collaboration": (["invite_sent", "comment_added"], ["/section/7"]),
}
USERNAME = "pages-bench"


def django_env(db: str) -> dict:
    """The production settings pointed at the bench database (no server is started: port unused)."""
    return prod_env(db_name=db, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))


def django_setup(db: str) -> None:
    os.environ.update(django_env(db))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def generate(args: argparse.Namespace) -> None:
    """The shared data set (bench/analytics_data.py), folded as the worker folds it."""
    data = analytics_data.generate(db=args.db, events=args.events, days=args.days)
    print(f"inserted {data['events']:,} events in {data['insert_seconds']} s", flush=True)
    folded = analytics_data.fold_all(args.db)
    print(f"folded {folded['folded']:,} events in {folded['fold_seconds']} s", flush=True)
    prepare(args)


def prepare(args: argparse.Namespace) -> None:
    """On a generated and folded database: a member to log in as, five features, one health scan."""
    django_setup(args.db)
    from django.contrib.auth import get_user_model

    from analytics import health
    from analytics.models import Feature
    from apps_registry.models import Application, Membership

    app = Application.objects.get(name="Bench", company__name="Bench Analytics")
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    Membership.objects.get_or_create(user=user, company=app.company, defaults={"role": Membership.Role.MEMBER})
    for name, (events, prefixes) in FEATURES.items():
        Feature.objects.update_or_create(
            application=app, name=name, defaults={"events": events, "path_prefixes": prefixes}
        )
    started = time.monotonic()
    health.organizations_scan(app=app)
    print(f"health scan in {time.monotonic() - started:.1f} s")


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
    return {"p50_ms": round(statistics.median(samples), 1), "p95_ms": round(percentile(samples, 95), 1)}


def run(args: argparse.Namespace) -> bool:
    django_setup(args.db)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from apps_registry.models import Application

    app = Application.objects.get(name="Bench", company__name="Bench Analytics")
    client = Client()
    client.force_login(get_user_model().objects.get(username=USERNAME))
    base = f"/app/{app.uuid}"

    def get(url: str) -> bytes:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
        assert b"error-state" not in response.content, (url, response.content[:2000])
        return response.content

    def select_one() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    pages = {
        "overview_30d": f"{base}/",
        "overview_90d": f"{base}/?range=90",
        "overview_30d_production": f"{base}/?env=production",
        "pages": f"{base}/pages/",
        "page_trend": f"{base}/pages/trend/?path=/section/3",
        "features": f"{base}/features/",
        "organizations": f"{base}/organizations/",
        "organizations_by_health": f"{base}/organizations/?sort=health",
        "organization": f"{base}/organizations/org_42/",
        "stream": f"{base}/stream/",
        "stream_poll": f"{base}/stream/rows/",
        "explorer_form": f"{base}/explorer/",
        "explorer_30d_daily_by_event": f"{base}/explorer/?measure=events&interval=day&g1=event",
    }
    results: dict[str, dict] = {"baseline_select_1": timed(select_one, args.runs * 5)}
    for name, url in pages.items():
        results[name] = timed(lambda url=url: get(url), args.runs)
        print(f"{name:32} {results[name]}", flush=True)

    with CaptureQueriesContext(connection) as captured:
        get(pages["stream_poll"])
    statements = [q["sql"] for q in captured.captured_queries]
    on_events = [s for s in statements if "FROM ingest_event " in s]  # not the partition registry's read
    results["stream_poll_queries"] = {"statements": len(statements), "on_events": len(on_events)}
    print(f"stream poll: {len(statements)} statements, {len(on_events)} on ingest_event")
    for sql in statements:
        print(f"    {sql[:160]}")
    print("BENCH_JSON " + json.dumps(results))
    if args.explain and on_events:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {on_events[-1]}")
            print("\n-- stream poll\n" + "\n".join(row[0] for row in cursor.fetchall()))
    over = [n for n, r in results.items() if "p95_ms" in r and n.startswith(tuple(pages)) and r["p95_ms"] >= BAR_MS]
    print(f"pages over {BAR_MS} ms at p95: {over or 'none'}")
    return len(on_events) == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--events", type=int, default=10_000_000)
    gen.add_argument("--days", type=int, default=90)
    sub.add_parser("prepare")
    bench = sub.add_parser("run")
    bench.add_argument("--runs", type=int, default=20)
    bench.add_argument("--explain", action="store_true")
    parser.add_argument("--db", default="analytics_bench", help="made by bench/analytics_data.py (or `generate`)")
    args = parser.parse_args()
    if args.command == "generate":
        generate(args)  # loads the machine too, but times nothing: no lock
        return
    if args.command == "prepare":
        prepare(args)
        return
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another benchmark holds the lock; waiting", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        sys.exit(0 if run(args) else 1)


if __name__ == "__main__":
    main()
