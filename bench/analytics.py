#!/usr/bin/env python3
"""Analytics: fold throughput, rollup lag after a burst, and read-endpoint latency at 10 million events.

    bench/analytics.py [--phases fold,lag,reads] [--fold-events 1000000] [--burst-rate 27000]
                       [--burst-seconds 30] [--reads-db analytics_bench] [--requests 60] [--no-baseline]

Phases (each prints its figures; the last line is `ANALYTICS_BENCH_JSON {...}`; exit 1 if a bar is missed):
- fold: `--fold-events` pending /v1 events (bench/analytics_data.py's shape, over 7 days) in
  `analytics_bench_fold`; two folder processes (`fold_drain`, as two worker processes would) fold
  them; events/s = rows / wall time until none is pending. Bar: ≥ 50,000 events/s.
- lag: the same two folders keep polling (every 2 s when idle, as the beat does) while rows are
  inserted at `--burst-rate` events/s for `--burst-seconds` (default: the SDK batch-ingest rate of
  bench/README.md, at full speed); measures the time from the end of the burst until no row is
  pending. Bar: ≤ 10 s.
- reads: against `--reads-db` (10 million events over 90 days, 1,000 orgs, 50,000 users; built by
  `bench/analytics_data.py --fold` when missing), every read endpoint is called through Django's
  test client with a personal API key (in process: view, selectors, queries, JSON; no HTTP server),
  a few warm-up calls then `--requests` timed calls each. Bar: p95 < 150 ms for every endpoint.
The shared-machine baseline (`../shared/bench/baseline`, bare Django + PostgreSQL requests/s) is
measured in the same run, so figures from a busy machine can be read against it.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import analytics_data  # noqa: E402 - after the re-exec into the venv
from common import PG, python  # noqa: E402

FOLD_DB = "analytics_bench_fold"
BAR_FOLD_EVENTS_PER_S = 50_000
BAR_LAG_SECONDS = 10
BAR_P95_MS = 150


def log(msg: str) -> None:
    print(f"[analytics-bench] {msg}", flush=True)


def baseline() -> dict | None:
    shared = ROOT.parent / "shared" / "bench" / "baseline"
    if not shared.exists():
        shared = Path("/work/shared/bench/baseline")
    out = subprocess.run([str(shared), "--duration", "5"], check=True, capture_output=True, text=True).stdout
    line = next((li for li in out.splitlines() if li.startswith("BASELINE_JSON ")), None)
    return json.loads(line.removeprefix("BASELINE_JSON ")) if line else None


def _pending(db: str) -> int:
    import psycopg

    with psycopg.connect(f"{PG}/{db}") as conn:
        return conn.execute(analytics_data.QUEUED_SQL).fetchone()[0]


def phase_fold(events: int) -> dict:
    data = analytics_data.generate(db=FOLD_DB, events=events, days=7)
    log(f"{events:,} pending rows inserted in {data['insert_seconds']} s; folding with 2 processes")
    result = analytics_data.fold_all(FOLD_DB, processes=2)
    log(f"folded {result['folded']:,} rows in {result['fold_seconds']} s = {result['fold_events_per_s']:,} events/s")
    return result


POLL_CODE = """
import time
from analytics.fold import fold_drain
while True:
    if not fold_drain(budget_seconds=50).claimed:
        time.sleep(2.0)
"""


def phase_lag(rate: int, seconds: int) -> dict:
    import psycopg

    env = analytics_data.bench_env(FOLD_DB)
    folders = [
        subprocess.Popen([python(), "manage.py", "shell", "-c", POLL_CODE], cwd=ROOT, env=env, start_new_session=True)
        for _ in range(2)
    ]
    try:
        with psycopg.connect(f"{PG}/{FOLD_DB}", autocommit=True) as conn:
            company, app = conn.execute("SELECT company_id, id FROM apps_registry_application LIMIT 1").fetchone()
            today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]
            offset = conn.execute("SELECT count(*) FROM ingest_event").fetchone()[0]
            tick = 0.1
            per_tick = max(1, int(rate * tick))
            inserted, max_backlog = 0, 0
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                due = started + (inserted / per_tick + 1) * tick
                lo = offset + inserted
                conn.execute(
                    analytics_data.INSERT_SQL,
                    {
                        "company": company,
                        "app": app,
                        "names": analytics_data.EVENT_NAMES,
                        "orgs": 1000,
                        "days": 1,
                        "active": 10_000,
                        "today": today,
                        "lo": lo,
                        "hi": lo + per_tick,
                        "total": 10**12,  # every row falls on today, at its first seconds
                        "per_day": 10**12,
                    },
                )
                inserted += per_tick
                if inserted % (per_tick * 10) == 0:
                    max_backlog = max(max_backlog, conn.execute(analytics_data.QUEUED_SQL).fetchone()[0])
                time.sleep(max(0.0, due - time.monotonic()))
            burst = time.monotonic() - started
            ended = time.monotonic()
            while conn.execute(analytics_data.QUEUED_SQL).fetchone()[0]:
                time.sleep(0.1)
            lag = time.monotonic() - ended
    finally:
        for folder in folders:
            os.killpg(folder.pid, 15)
            folder.wait(timeout=30)
    achieved = round(inserted / burst)
    log(
        f"burst {inserted:,} rows in {burst:.1f} s ({achieved:,} events/s), backlog ≤ {max_backlog:,};"
        f" lag back to 0 in {lag:.1f} s"
    )
    return {"burst_events": inserted, "burst_rate": achieved, "max_backlog": max_backlog, "lag_seconds": round(lag, 1)}


def _endpoints(app_uuid: str, top_path: str) -> list[tuple[str, str, dict]]:
    base = f"/api/v1/analytics/apps/{app_uuid}/"
    return [
        ("activity (30 days, by day)", base + "activity", {}),
        ("activity (90 days, by week)", base + "activity", {"interval": "week", "from": "-89"}),
        ("activity (90 days, by month)", base + "activity", {"interval": "month", "from": "-89"}),
        ("activity (30 days, production)", base + "activity", {"environment": "production"}),
        ("active users (DAU/WAU/MAU)", base + "active-users", {}),
        ("pages (top 50)", base + "pages", {}),
        ("page trend", base + "pages/trend", {"path": top_path}),
        ("features (5 defined)", base + "features", {}),
        ("organizations (by events)", base + "organizations", {}),
        ("organizations (by health, at_risk)", base + "organizations", {"sort": "health", "bucket": "at_risk"}),
        ("organizations (search)", base + "organizations", {"search": "org_12"}),
        ("organization detail", base + "organizations/org_7", {}),
    ]


def phase_reads(db: str, requests: int) -> dict:
    import psycopg

    with psycopg.connect(f"{PG}/postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone()
    if not exists:
        log(f"{db} missing: generating 10,000,000 events and folding them (several minutes)")
        data = analytics_data.generate(db=db, events=10_000_000)
        data.update(analytics_data.fold_all(db))
        log(f"generated in {data['insert_seconds']} s, folded at {data['fold_events_per_s']:,} events/s")
    os.environ.update(analytics_data.bench_env(db))
    os.environ["DJANGO_SETTINGS_MODULE"] = "saastracker.settings.dev"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from analytics.health import organizations_scan
    from analytics.models import Feature
    from analytics.services import personal_key_create
    from apps_registry.models import Application, Membership

    app = Application.objects.select_related("company").get(name="Bench")
    user, _ = get_user_model().objects.get_or_create(username="bench-reader")
    Membership.objects.get_or_create(user=user, defaults={"company": app.company, "role": "member"})
    _, raw = personal_key_create(user=user, name="bench")
    for name, events, prefixes in (
        ("reports", ["report_run"], []),
        ("export", ["export_csv"], []),
        ("search", ["search", "filter_applied"], []),
        ("sections 1x", [], ["/section/1"]),
        ("integrations", ["integration_connected"], ["/section/4"]),
    ):
        Feature.objects.get_or_create(
            application=app, name=name, defaults={"events": events, "path_prefixes": prefixes}
        )
    started = time.monotonic()
    scan = organizations_scan(app=app)
    scan_seconds = time.monotonic() - started
    log(f"health scan of {scan['orgs']:,} orgs: {scan_seconds:.1f} s")

    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_HOST="127.0.0.1")
    today = timezone.now().date()
    top = client.get(f"/api/v1/analytics/apps/{app.uuid}/pages", {"limit": 1}).json()["pages"][0]["path"]
    results = {}
    for label, url, params in _endpoints(str(app.uuid), top):
        if params.get("from") == "-89":
            params = {**params, "from": (today - timedelta(days=89)).isoformat()}
        for _ in range(3):
            response = client.get(url, params)
            assert response.status_code == 200, (label, response.status_code, response.content[:300])
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
        times.sort()
        p95 = times[max(0, round(0.95 * len(times)) - 1)]
        results[label] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1)}
        log(f"{label:40s} p50 {results[label]['p50_ms']:7.1f} ms   p95 {p95:7.1f} ms")
    with psycopg.connect(f"{PG}/{db}") as conn:
        sizes = dict(
            conn.execute(
                "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname LIKE 'analytics_%%' "
                "OR relname = 'ingest_event'"
            ).fetchall()
        )
    return {"endpoints": results, "scan_seconds": round(scan_seconds, 1), "rows": sizes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--phases", default="fold,lag,reads")
    p.add_argument("--fold-events", type=int, default=1_000_000)
    p.add_argument("--burst-rate", type=int, default=27_000)
    p.add_argument("--burst-seconds", type=int, default=30)
    p.add_argument("--reads-db", default="analytics_bench")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--no-baseline", action="store_true")
    args = p.parse_args()
    phases = set(args.phases.split(","))

    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another bench run is in progress; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)

    out: dict = {"load_average": os.getloadavg()}
    if not args.no_baseline:
        out["baseline"] = baseline()
        log(f"shared-machine baseline: {json.dumps(out['baseline'])}")
    ok = True
    if "reads" in phases:
        out["reads"] = phase_reads(args.reads_db, args.requests)
        ok &= all(r["p95_ms"] < BAR_P95_MS for r in out["reads"]["endpoints"].values())
    if "fold" in phases:
        out["fold"] = phase_fold(args.fold_events)
        ok &= out["fold"]["fold_events_per_s"] >= BAR_FOLD_EVENTS_PER_S
    if "lag" in phases:
        if "fold" not in phases:
            analytics_data.generate(db=FOLD_DB, events=100_000, days=7)
            analytics_data.fold_all(FOLD_DB)
        out["lag"] = phase_lag(args.burst_rate, args.burst_seconds)
        ok &= out["lag"]["lag_seconds"] <= BAR_LAG_SECONDS
    out["load_average_end"] = os.getloadavg()
    out["bars_met"] = ok
    print("ANALYTICS_BENCH_JSON " + json.dumps(out, default=str), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
