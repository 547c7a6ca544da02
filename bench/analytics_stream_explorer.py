#!/usr/bin/env python3
"""Event stream and Event explorer at 10 million stored events: p95 latencies and the plans behind them.

    bench/analytics_stream_explorer.py generate [--events 10000000] [--days 90]
    bench/analytics_stream_explorer.py run [--runs 20] [--explain]

`generate` creates/migrates the PostgreSQL database `explorer_bench` and fills `ingest_event` with
N events over the last D days (1,000 orgs, 50,000 users, 20 event names, ~5% staging), generated in
SQL with `generate_series` (issue 10's `bench/analytics_data.py` will be the shared generator; this
is a temporary copy of the same data set), then VACUUM ANALYZE (so index-only scans can skip the
heap, as autovacuum does on a live table).

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
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import PG, ROOT, database_prepare, prod_env, psql

DB_NAME = "explorer_bench"
DSN = f"{PG}/{DB_NAME}"

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
    return prod_env(db_name=DB_NAME, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))


def generate(args: argparse.Namespace) -> None:
    env = django_env()
    database_prepare(env, DB_NAME)
    psql(
        DSN,
        "insert into apps_registry_plan (tier, events_per_month, apps_max, retention_days, orgs_max) "
        "values ('enterprise', 100000000, 100, 400, 100000) on conflict do nothing",
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from analytics.models import PersonalApiKey
    from analytics.services import personal_key_create
    from apps_registry.models import Application, Company, Membership, Plan

    psql(DSN, "truncate ingest_event, ingest_sdkevent")
    plan = Plan.objects.get(tier="enterprise")
    company, _ = Company.objects.get_or_create(name="explorer-bench", defaults={"plan": plan})
    app, _ = Application.objects.get_or_create(company=company, name="bench")
    user, _ = get_user_model().objects.get_or_create(username="explorer-bench")
    Membership.objects.get_or_create(user=user, company=company, defaults={"role": Membership.Role.MEMBER})
    PersonalApiKey.objects.filter(user=user).delete()
    _, raw = personal_key_create(user=user, name="bench")
    (Path(tempfile.gettempdir()) / "explorer-bench.json").write_text(
        json.dumps({"app_uuid": str(app.uuid), "key": raw})
    )
    names = ", ".join(f"'{n}'" for n in EVENT_NAMES)
    started = time.monotonic()
    psql(
        DSN,
        _GENERATE.format(company_id=company.pk, app_id=app.pk, names=names, days=args.days, n=args.events),
    )
    print(f"inserted {args.events:,} events in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    psql(DSN, "vacuum analyze ingest_event")
    print(f"vacuum analyze in {time.monotonic() - started:.0f} s")


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


def run(args: argparse.Namespace) -> None:
    os.environ.update(django_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    meta = json.loads((Path(tempfile.gettempdir()) / "explorer-bench.json").read_text())
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
    results["stream_first_page"] = timed(lambda: get(first_url), args.runs * 5)
    cursor = get(first_url)["next"]
    for _ in range(49):
        cursor = get(f"{base}/stream?source=events&limit=200&before={cursor}")["next"]
    back_url = f"{base}/stream?source=events&limit=200&before={cursor}"
    results["stream_page_10000_back"] = timed(lambda: get(back_url), args.runs * 5)

    now = time.time()
    day = 86400
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - 31 * day))
    end = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now - day))
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
    results["explorer_daily_count_by_event_30d"] = timed(lambda: post(by_event), args.runs)
    results["explorer_daily_users_30d"] = timed(lambda: post(users), args.runs)
    rows = post(by_event)["rows"]
    results["explorer_daily_count_by_event_30d"]["rows"] = len(rows)
    results["explorer_daily_count_by_event_30d"]["events_counted"] = sum(r[-1] for r in rows)
    for name, figures in results.items():
        print(f"{name:40} {figures}")
    print("BENCH_JSON " + json.dumps(results))
    if args.explain:
        explain(meta, first_url, back_url, by_event, users)


def explain(meta: dict, first_url: str, back_url: str, by_event: dict, users: dict) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact statements the endpoints run."""
    from django.db import connection

    from analytics.query import query_compile
    from analytics.query.engines import POSTGRES_WORK_MEM
    from analytics.query.validation import query_parse
    from analytics.stream import stream_sql
    from apps_registry.models import Application

    app = Application.objects.get(uuid=meta["app_uuid"])
    with connection.cursor() as cursor:
        # The explorer's own session settings (analytics/query/engines.py), for the plans to match.
        cursor.execute("SELECT set_config('jit', 'off', false), set_config('work_mem', %s, false)", [POSTGRES_WORK_MEM])
        for title, (sql, params) in {
            "stream, first page": stream_sql(app=app, source="events", limit=200, before=None),
            "stream, 10,000 back": stream_sql(
                app=app, source="events", limit=200, before=back_url.rsplit("before=", 1)[1]
            ),
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
        load = os.getloadavg()[0]
        print(f"load average at start: {load:.1f}")
        run(args)


if __name__ == "__main__":
    main()
