#!/usr/bin/env python3
"""Funnels and retention (issue 21) on the shared analytics data set: p50/p95 with the load average.

    bench/funnels.py generate [--events 10000000] [--days 90]
    bench/funnels.py run [--runs 10] [--raw]

`generate` (re)creates the PostgreSQL database `funnels_bench` with `bench/analytics_data.py`'s data
set (N `/v1/events` rows over the last D days, 1,000 orgs, 50,000 users, 20 event names), folds it
into the rollups (two folders) and runs VACUUM ANALYZE. `run` times, in process through the real
views (Django test client, a member's session, prod settings pointed at the bench database), after one
warm-up each:
- a 3-step funnel over the last 30 days (onboarding_step -> page_view -> logout, window 1 day)
  by users and by orgs;
- a 12-week retention (start onboarding_step, return any event, cohorts over the last 12 weeks);
- the Funnels page running the same 3-step funnel, and the Retention page (12 weekly periods over the
  last 90 days).
Each figure is printed with the 1-minute load average at its start and the bare `SELECT 1` of the run.
The funnels take the fold's narrow table (analytics/query/funnel_fast.py) when it answers; `--raw`
sets ANALYTICS_FUNNEL_FAST_PATH=0 (the raw statement, the "before"). The path taken is printed.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import PG, ROOT, prod_env, psql

DB_NAME = "funnels_bench"
META = Path(tempfile.gettempdir()) / "funnels-bench.json"
STEPS = ["onboarding_step", "page_view", "logout"]  # steps the data set's users do in turn


def generate(args: argparse.Namespace) -> None:
    from analytics_data import fold_all
    from analytics_data import generate as data_generate

    data = data_generate(db=DB_NAME, events=args.events, days=args.days)
    # A company that keeps a year of raw events: the 12-week retention is inside what it keeps, which
    # is when the rollup path may answer (analytics/query/retention_rollups.py).
    psql(
        f"{PG}/{DB_NAME}",
        f"UPDATE apps_registry_company SET retention_days_override = 365 WHERE id = {int(data['company_id'])}",  # noqa: S608 (an id)
    )
    data.update(fold_all(DB_NAME))  # the retention's rollup path reads what the fold maintains (+ VACUUM ANALYZE)
    META.write_text(json.dumps(data))
    print(f"inserted {args.events:,} events in {data['insert_seconds']:.0f} s, folded in {data['fold_seconds']:.0f} s")


def load() -> float:
    return os.getloadavg()[0]


def timed(label: str, runs: int, call) -> None:
    call()  # warm-up
    started_load = load()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(
        f"| {label} | {runs} | {statistics.median(times):,.0f} ms | {p95:,.0f} ms | {max(times):,.0f} ms "
        f"| {started_load:.2f} |"
    )


def run(args: argparse.Namespace) -> None:
    meta = json.loads(META.read_text())
    os.environ.update(
        prod_env(db_name=DB_NAME, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"))
    )
    os.environ["ANALYTICS_QUERY_TIMEOUT"] = "60"
    os.environ["ANALYTICS_FUNNEL_FAST_PATH"] = "0" if args.raw else "1"
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(ROOT), *(p for p in sys.path if p and Path(p).resolve() != Path(here))]  # bench/ingest.py
    sys.modules.pop("ingest", None)
    # Bind the project's packages now: bench/ holds scripts of the same names (ingest.py, analytics.py, revenue.py).
    import django

    import analytics  # noqa: F401
    import ingest  # noqa: F401
    import revenue  # noqa: F401 (bench/revenue.py too)

    django.setup()
    from datetime import UTC, datetime, timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from apps_registry.models import Application, Membership

    app = Application.objects.get(uuid=meta["app_uuid"])
    user, _ = get_user_model().objects.get_or_create(username="funnels-bench")
    Membership.objects.get_or_create(user=user, company=app.company, defaults={"role": Membership.Role.MEMBER})
    api = Client()  # the session (the API accepts it as it accepts a personal key)
    api.force_login(user)
    page = api
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    funnel = {
        "source": "events",
        "steps": [{"event": s} for s in STEPS],
        "window_seconds": 86400,
        "from": (today - timedelta(days=30)).isoformat(),
        "to": today.isoformat(),
    }
    monday = today - timedelta(days=today.weekday() + 1)
    retention = {
        "source": "events",
        "start_event": STEPS[0],
        "return_event": "*",
        "period": "week",
        "periods": 12,
        "from": (monday - timedelta(weeks=12)).isoformat(),
        "to": today.isoformat(),
    }
    base = f"/api/v1/analytics/apps/{app.uuid}"

    def post(path: str, body: dict) -> None:
        response = api.post(base + path, body, content_type="application/json")
        assert response.status_code == 200, response.content[:500]

    def select1() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    events = psql(f"{PG}/{DB_NAME}", "SELECT count(*) FROM ingest_event")
    print(f"{int(events):,} events; loadavg {os.getloadavg()}")
    print("| what | runs | p50 | p95 | max | load (1 min) |\n|---|---|---|---|---|---|")
    timed("SELECT 1 (baseline)", args.runs, select1)
    timed("funnel, 3 steps, 30 days, by users", args.runs, lambda: post("/funnel", funnel))
    timed("funnel, 3 steps, 30 days, by orgs", args.runs, lambda: post("/funnel", {**funnel, "count_by": "orgs"}))
    timed("retention, 12 weeks", args.runs, lambda: post("/retention", retention))
    qs = "&".join(f"s{i}={s}" for i, s in enumerate(STEPS, start=1))

    def page_get() -> None:
        response = page.get(f"/app/{app.uuid}/funnels/?range=30&window=86400&run=1&{qs}")
        assert response.status_code == 200
        assert b"funnel-table" in response.content

    timed("Funnels page (same funnel)", args.runs, page_get)

    def retention_page_get() -> None:
        query = f"range=90&start={STEPS[0]}&return=*&period=week&periods=12&run=1"
        response = page.get(f"/app/{app.uuid}/retention/?{query}")
        assert response.status_code == 200
        assert b'id="retention-table"' in response.content

    timed("Retention page (12 weeks, last 90 days)", args.runs, retention_page_get)
    from analytics.query.funnel import funnel_answer

    for count_by in ("users", "orgs"):
        answer, path = funnel_answer(app=app, query={**funnel, "count_by": count_by})
        print(f"funnel by {count_by}: {[s['count'] for s in answer['steps']]}, path {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--events", type=int, default=10_000_000)
    g.add_argument("--days", type=int, default=90)
    r = sub.add_parser("run")
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--raw", action="store_true", help="funnels on the raw statement (ANALYTICS_FUNNEL_FAST_PATH=0)")
    args = parser.parse_args()
    generate(args) if args.command == "generate" else run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
