#!/usr/bin/env python3
"""The analytics pages' server time at 10 million stored events: p50/p95 per page, and the stream poll's queries.

    bench/analytics_pages.py generate [--events 10000000] [--days 90]
    bench/analytics_pages.py run [--runs 20] [--explain]

`generate` creates/migrates the PostgreSQL database `pages_bench` and fills `ingest_event` with N
events over the last D days (1,000 orgs, 50,000 users, 20 event names, 37x12 paths, ~5% staging)
with one `INSERT ... SELECT generate_series` (the data set of issue 10's analytics benchmark; this is
a temporary copy until `bench/analytics_data.py` lands), defines five features, then folds every
row into the rollups with the analytics fold (`analytics.fold.fold_drain`, as the worker does) and
runs the health scan once.

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

from common import PG, ROOT, database_prepare, prod_env, psql

DB_NAME = "pages_bench"
DSN = f"{PG}/{DB_NAME}"
META = Path(tempfile.gettempdir()) / "pages-bench.json"
BAR_MS = 200

EVENT_NAMES = [
    "page_view",
    "feature_used",
    "button_clicked",
    "signup",
    "login",
    "logout",
    "invite_sent",
    "report_viewed",
    "export_started",
    "search",
    "settings_changed",
    "file_uploaded",
    "comment_added",
    "dashboard_viewed",
    "billing_viewed",
    "plan_upgraded",
    "integration_added",
    "api_key_created",
    "onboarding.started",
    "onboarding.completed",
]
FEATURES = {
    "Reports": (["report_viewed", "export_started"], []),
    "Search": (["search"], []),
    "Billing": (["billing_viewed", "plan_upgraded"], ["/p/3/"]),
    "Integrations": (["integration_added", "api_key_created"], []),
    "Collaboration": (["invite_sent", "comment_added"], ["/p/7/"]),
}

# Event names follow a skewed distribution (page_view most frequent): index = floor(20 * r^2).
_GENERATE = """
INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts,
    export_error, webhook_pending, event_id, event, user_hash, customer_org_id, path, session_id,
    session_inferred, plan, environment, occurred_at, properties)
SELECT {company_id}, {app_id}, t + interval '150 milliseconds', 1, 1, '', false, gen_random_uuid(),
    (ARRAY[{names}])[1 + floor(20 * r1 * r1)::int],
    md5(u::text) || md5('u' || u::text),
    'org_' || (u % 1000),
    '/p/' || (u % 37) || '/' || floor(r2 * 12)::int,
    md5(u::text || ':' || (extract(epoch from t)::bigint / 1800))::uuid,
    false,
    (ARRAY['free', 'pro', 'enterprise'])[1 + (u % 1000) % 3],
    CASE WHEN r2 < 0.05 THEN 'staging' ELSE 'production' END,
    t,
    jsonb_build_object('n', g % 10, 'variant', CASE WHEN r1 < 0.5 THEN 'a' ELSE 'b' END)
FROM (
    SELECT g, random() AS r1, random() AS r2, (g::bigint * 7919) % 50000 AS u,
        now() - interval '{days} days' + (g::float8 / {n}) * interval '{days} days' AS t
    FROM generate_series(1, {n}) AS g
) AS s
"""


def django_env() -> dict:
    """The production settings pointed at the bench database (no server is started: port unused)."""
    return prod_env(db_name=DB_NAME, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))


def django_setup() -> None:
    os.environ.update(django_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def generate(args: argparse.Namespace) -> None:
    database_prepare(django_env(), DB_NAME)
    psql(
        DSN,
        "insert into apps_registry_plan (tier, events_per_month, apps_max, retention_days, orgs_max) "
        "values ('enterprise', 100000000, 100, 400, 100000) on conflict do nothing",
    )
    django_setup()
    from django.contrib.auth import get_user_model

    from analytics import fold, health  # issue 10's fold and health scan
    from analytics.models import Feature
    from apps_registry.models import Application, Company, Membership, Plan

    psql(DSN, "truncate ingest_event, ingest_sdkevent")
    for table in psql(DSN, "select tablename from pg_tables where tablename like 'analytics\\_%'").split():
        if table not in ("analytics_personalapikey", "analytics_feature"):
            psql(DSN, f"truncate {table}")
    plan = Plan.objects.get(tier="enterprise")
    company, _ = Company.objects.get_or_create(name="pages-bench", defaults={"plan": plan})
    app, _ = Application.objects.get_or_create(company=company, name="bench")
    user, _ = get_user_model().objects.get_or_create(username="pages-bench")
    Membership.objects.get_or_create(user=user, company=company, defaults={"role": Membership.Role.MEMBER})
    for name, (events, prefixes) in FEATURES.items():
        Feature.objects.update_or_create(
            application=app, name=name, defaults={"events": events, "path_prefixes": prefixes}
        )
    META.write_text(json.dumps({"app_uuid": str(app.uuid), "username": user.username}))
    names = ", ".join(f"'{n}'" for n in EVENT_NAMES)
    started = time.monotonic()
    psql(DSN, _GENERATE.format(company_id=company.pk, app_id=app.pk, names=names, days=args.days, n=args.events))
    print(f"inserted {args.events:,} events in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    folded = 0
    while True:
        report = fold.fold_drain(budget_seconds=60)
        folded += report.claimed
        print(f"  folded so far: {folded:,} ({time.monotonic() - started:.0f} s)", flush=True)
        if not report.more:
            break
    print(f"folded {folded:,} events in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    health.organizations_scan(app=app)
    print(f"health scan in {time.monotonic() - started:.0f} s")
    psql(DSN, "vacuum analyze")


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
    django_setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    meta = json.loads(META.read_text())
    client = Client()
    client.force_login(get_user_model().objects.get(username=meta["username"]))
    base = f"/app/{meta['app_uuid']}"

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
        "page_trend": f"{base}/pages/trend/?path=/p/3/4",
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
    on_events = [s for s in statements if "ingest_event" in s]
    results["stream_poll_queries"] = {"statements": len(statements), "on_events": len(on_events)}
    print(f"stream poll: {len(statements)} statements, {len(on_events)} on ingest_event")
    for sql in statements:
        print(f"    {sql[:160]}")
    print("BENCH_JSON " + json.dumps(results))
    if args.explain and on_events:
        from analytics import stream  # issue 11's stream
        from apps_registry.models import Application

        app = Application.objects.get(uuid=meta["app_uuid"])
        sql, params = stream.stream_sql(app=app, source="events", limit=50, before=None)
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
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
    bench = sub.add_parser("run")
    bench.add_argument("--runs", type=int, default=20)
    bench.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    if args.command == "generate":
        generate(args)  # loads the machine too, but times nothing: no lock
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
