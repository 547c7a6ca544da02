#!/usr/bin/env python3
"""Revenue at scale: 10,000 organizations, 100,000 subscription rows over 36 months.

    bench/revenue.py [--db revenue_bench] [--runs 20]
    bench/revenue.py --db revenue_10m --events-app [--runs 20]

Creates (or reuses) the bench database, an app with 10,000 organizations seen in events (health
scores and buckets spread over every bucket, names imported) and a subscriptions file of 100,000 rows
(10 per org: monthly plan changes, about a third ended, four currencies). With `--events-app`, on a
copy of the 10 M-event data set (`CREATE DATABASE revenue_10m TEMPLATE funnels_bench`): the same
10,000 organizations and 100,000 rows go on the app that holds the events, whose orgs `org_0`… are
the events' `customer_org_id`s (the data set has 1,000: those are seen, with health scored from
their events by one real health scan; the other 9,000 are imported only, never seen). Then prints,
with the load average, as JSON:
- the 100,000-row subscriptions import (validate + replace), wall time, three times (the table
  emptied of earlier runs' dead rows first; the database vacuumed and analysed before the reads, as
  autovacuum would: it is off on the shared bench cluster);
- p50/p95 of the server time of the API answers `revenue`, `revenue/mrr?months=36`, `revenue-health`,
  `signals`, `organizations?sort=-mrr` and of the pages Revenue, Revenue × Health, Signals,
  Organizations by MRR (Django test client in process, a logged-in member, production settings),
  beside the bare `SELECT 1` round trip of the same run;
- the same page reads while another process imports 100,000-row snapshots back to back (as an
  import request in another worker would; `--import-thread`: in a thread of the reading process).
"""

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, database_prepare, prod_env

ORGS = 10_000
ROWS_PER_ORG = 10
USERNAME = "revenue-bench"
IMPORTS_SECONDS = 45
WRITTEN_TABLES = (
    "revenue_subscription",
    "revenue_snapshotpart",
    "revenue_import",
    "revenue_customerorg",
    "analytics_organization",
    "analytics_orgsignal",
    "analytics_orghealthday",
)


def django_env(db: str) -> dict:
    return prod_env(db_name=db, port=0, redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"))


def subscriptions_csv(seed: int) -> bytes:
    rng = random.Random(seed)
    today = datetime.now(tz=UTC).date()
    lines = ["external_org_id,product_code,mrr,currency,start_at,end_at,subscription_id"]
    n = 0
    for org in range(ORGS):
        start = today - timedelta(days=rng.randint(30, 36 * 30))
        for i in range(ROWS_PER_ORG):
            length = rng.randint(20, 120)
            end = start + timedelta(days=length)
            still = i == ROWS_PER_ORG - 1 and rng.random() < 0.7
            currency = rng.choice(["EUR", "EUR", "USD", "GBP"])
            mrr = f"{rng.randint(10, 5000)}.{rng.randint(0, 99):02d}"
            product = rng.choice(["starter", "pro", "team", "enterprise", "addon"])
            end_text = "" if still or end > today else end.isoformat()
            lines.append(f"org_{org},{product},{mrr},{currency},{start.isoformat()},{end_text},s{n}")
            n += 1
            start = end
            if start > today:
                start = today - timedelta(days=rng.randint(1, 20))
    return ("\n".join(lines) + "\n").encode()


def setup(db: str) -> None:
    env = django_env(db)
    database_prepare(env, db)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def events_app():  # type: ignore[no-untyped-def]
    """The app of the data set's events: the one with the most organizations seen in events."""
    from django.db.models import Count

    from analytics.models import Organization
    from apps_registry.models import Application

    top = Organization.objects.values("application").annotate(n=Count("id")).order_by("-n").first()
    assert top is not None, "no organization seen in events: not a copy of the analytics data set"
    return Application.objects.select_related("company").get(pk=top["application"])


def prepare(on_events: bool = False):  # type: ignore[no-untyped-def]
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from analytics.models import Organization
    from apps_registry.models import Application, Company, Membership, Plan
    from revenue.models import CustomerOrg, FxRate
    from revenue.services import import_run

    if on_events:
        app = events_app()
        company = app.company
    else:
        plan, _ = Plan.objects.get_or_create(
            tier="growth",
            defaults={"events_per_month": 10**9, "apps_max": 10, "retention_days": 365, "orgs_max": 100000},
        )
        company, _ = Company.objects.get_or_create(name="Bench Revenue", defaults={"plan": plan})
        app, _ = Application.objects.get_or_create(company=company, name="Bench")
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    Membership.objects.get_or_create(user=user, defaults={"company": company, "role": Membership.Role.ADMIN})
    for currency, rate in (("USD", "0.92"), ("GBP", "1.17")):
        FxRate.objects.update_or_create(company=company, currency=currency, defaults={"rate": Decimal(rate)})
    if on_events:
        if CustomerOrg.objects.filter(application=app).count() < ORGS:
            names = "external_org_id,display_name\n" + "".join(f"org_{i},Customer {i}\n" for i in range(ORGS))
            import_run(app=app, kind="organizations", data=names.encode(), via="command")
    elif Organization.objects.filter(application=app).count() < ORGS:
        rng = random.Random(1)
        now = timezone.now()
        buckets = [("healthy", 75, 100), ("watch", 40, 69), ("at_risk", 0, 39), ("inactive", 0, 30)]
        rows = []
        for org in range(ORGS):
            bucket, low, high = rng.choice(buckets)
            rows.append(
                Organization(
                    application=app,
                    customer_org_id=f"org_{org}",
                    first_seen=now - timedelta(days=400),
                    last_seen=now - timedelta(days=rng.randint(0, 40)),
                    health_score=rng.randint(low, high),
                    health_bucket=bucket,
                )
            )
        Organization.objects.bulk_create(rows, ignore_conflicts=True, batch_size=5000)
        names = "external_org_id,display_name\n" + "".join(f"org_{i},Customer {i}\n" for i in range(ORGS))
        import_run(app=app, kind="organizations", data=names.encode(), via="command")
    return app, user


def vacuum(sql: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)


def import_loop(seconds: float, on_events: bool) -> None:
    """The child process: import the two snapshots in turn for `seconds`, print the times as JSON."""
    from revenue.services import import_run

    app, _ = prepare(on_events)
    files = [subscriptions_csv(seed) for seed in (1, 2)]
    print("importing", flush=True)
    times: list[float] = []
    committed: list[float] = []  # wall clock of each commit: which reads came first after it
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or not times:
        started = time.perf_counter()
        import_run(app=app, kind="subscriptions", data=files[len(times) % 2], via="command")
        times.append(round(time.perf_counter() - started, 2))
        committed.append(time.time())
    print(json.dumps({"times": times, "committed": committed}), flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="revenue_bench")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--import-thread", action="store_true", help="import in a thread of the reading process")
    parser.add_argument(
        "--events-app", action="store_true", help="on the app of a copy of the 10 M-event data set (see above)"
    )
    parser.add_argument("--import-loop", type=float, help=argparse.SUPPRESS)  # the importing child process
    args = parser.parse_args()
    setup(args.db)
    if args.import_loop:
        import_loop(args.import_loop, args.events_app)
        return
    from django.db import connection
    from django.test import Client

    from analytics.signals import revenue_signals_scan
    from revenue.services import import_run

    app, user = prepare(args.events_app)
    vacuum("VACUUM FULL revenue_subscription")  # autovacuum is off on this shared cluster: no earlier runs' rows
    files = [subscriptions_csv(seed) for seed in (1, 2)]
    out: dict = {"load_before": os.getloadavg(), "rows": files[0].count(b"\n") - 1, "orgs": ORGS, "app": str(app.uuid)}
    imports = []
    for i in range(3):
        started = time.perf_counter()
        report = import_run(app=app, kind="subscriptions", data=files[i % 2], via="command")
        imports.append(round(time.perf_counter() - started, 2))
        assert report["status"] == "applied", report["errors"][:3]
    out["import_seconds"] = imports
    out["mrr"] = report["counts"]["mrr_after"]
    if args.events_app:
        from analytics.health import organizations_scan
        from analytics.models import Organization

        out["orgs_seen_in_events"] = Organization.objects.filter(application=app).count()
        started = time.perf_counter()
        out["health_scan"] = organizations_scan(app=app)  # scores from the events; the revenue signals too
        out["health_scan_seconds"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    revenue_signals_scan(app=app)
    out["revenue_signals_scan_seconds"] = round(time.perf_counter() - started, 2)
    # What autovacuum does after the imports and the scans (off here); only the tables they wrote: a
    # database-wide VACUUM would re-read the 10 M events.
    vacuum(f"VACUUM (ANALYZE) {', '.join(WRITTEN_TABLES)}")
    # The reads below stand for a web process, which freezes its startup heap (saastracker/wsgi.py):
    # without this, full collections over the set-up's objects land in the reads' p95.
    gc.collect()
    gc.freeze()

    client = Client()
    client.force_login(user)
    api = f"/api/v1/analytics/apps/{app.uuid}"
    page = f"/app/{app.uuid}"
    targets = {
        "api_revenue": f"{api}/revenue",
        "api_mrr_36": f"{api}/revenue/mrr?months=36",
        "api_revenue_health": f"{api}/revenue-health",
        "api_signals": f"{api}/signals",
        "api_orgs_by_mrr": f"{api}/organizations?sort=-mrr",
        "page_revenue": f"{page}/revenue/",
        "page_revenue_health": f"{page}/revenue-health/",
        "page_signals": f"{page}/signals/",
        "page_orgs_by_mrr": f"{page}/organizations/?sort=-mrr",
    }

    read_at: dict[str, list[float]] = {}  # wall clock of each read's start, per URL (the reads during imports)

    def get(url: str) -> float:
        read_at.setdefault(url, []).append(time.time())
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        return elapsed

    def select_one() -> float:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return (time.perf_counter() - started) * 1000

    samples: dict[str, list[float]] = {name: [] for name in [*targets, "select_1"]}
    for url in targets.values():
        get(url)  # warm-up
    for _ in range(args.runs):  # alternating, so machine noise hits every target alike
        for name, url in targets.items():
            samples[name].append(get(url))
        samples["select_1"].append(select_one())
    out["quiet"] = {
        name: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(percentile(v, 95), 1)}
        for name, v in samples.items()
    }

    # The imports run in another process, as an import request does in production (another worker):
    # in a thread of this one, the validation's Python held the GIL the reads need (--import-thread).
    done = threading.Event()
    import_times: list[float] = []
    committed: list[float] = []

    def importer() -> None:
        try:
            i = 0
            while not done.is_set():
                started = time.perf_counter()
                import_run(app=app, kind="subscriptions", data=files[i % 2], via="command")
                import_times.append(round(time.perf_counter() - started, 2))
                committed.append(time.time())
                i += 1
        finally:
            connection.close()

    during: dict[str, list[float]] = {name: [] for name in targets if name.startswith("page_")}
    read_at.clear()
    if args.import_thread:
        thread = threading.Thread(target=importer)
        thread.start()
        deadline = time.monotonic() + IMPORTS_SECONDS
        while time.monotonic() < deadline or not import_times:
            for name in during:
                during[name].append(get(targets[name]))
        done.set()
        thread.join()
    else:
        command = [sys.executable, __file__, "--db", args.db, "--import-loop", str(IMPORTS_SECONDS)]
        command += ["--events-app"] if args.events_app else []
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "importing"
        while child.poll() is None:
            for name in during:
                during[name].append(get(targets[name]))
        child_out = json.loads(child.stdout.read())
        import_times, committed = child_out["times"], child_out["committed"]
    out["imports_in"] = "a thread of the reading process" if args.import_thread else "another process"
    out["during_import"] = {
        name: {"n": len(v), "p50_ms": round(statistics.median(v), 1), "p95_ms": round(percentile(v, 95), 1)}
        for name, v in during.items()
    }
    out["imports_during"] = import_times
    # Where the slow reads are: each target's first read after an import committed (it computes what the
    # new snapshot determines, unless an earlier read of another target did) against the others.
    out["during_import_first_after_commit"] = {}
    for name, values in during.items():
        starts = read_at[targets[name]]
        first = {next((i for i, t in enumerate(starts) if t > c), None) for c in committed} - {None}
        firsts = [v for i, v in enumerate(values) if i in first]
        rest = [v for i, v in enumerate(values) if i not in first]
        out["during_import_first_after_commit"][name] = {
            "first_n": len(firsts),
            "first_p50_ms": round(statistics.median(firsts), 1) if firsts else None,
            "first_max_ms": round(max(firsts), 1) if firsts else None,
            "rest_p50_ms": round(statistics.median(rest), 1) if rest else None,
            "rest_p95_ms": round(percentile(rest, 95), 1) if rest else None,
        }
    out["during_import_samples_ms"] = {name: [round(v) for v in values] for name, values in during.items()}
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
