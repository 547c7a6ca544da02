#!/usr/bin/env python3
"""Organization health: a full rescore of one app, and the organizations API, this tree vs a control tree.

    bench/health.py [--db health_bench] [--control /work/main] [--rounds 3] [--calls 20]

Works on a database made by `bench/analytics_data.py` (e.g. `--events 2000000 --days 60 --orgs 10000
--fold`). Defines five features if the app has none. Then, in alternating rounds (this tree, the
control tree, this tree, ...), a fresh process per round times `organizations_scan` of the app (every
org rescored: reasons, history, signals) and `--calls` warm calls each of the organizations list
(`GET .../organizations`, 50 per page, by health) and of one organization's detail, through the real
views (Django test client, a logged-in member). The 1-minute load average is printed beside every figure.
Prints `HEALTH_BENCH_JSON {...}`.
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG  # noqa: E402

CHILD = r"""
import json, os, statistics, sys, time
import django
django.setup()
from django.test import Client
from apps_registry.models import Application, Membership
from analytics.health import organizations_scan
from analytics.models import Feature, Organization
from django.contrib.auth import get_user_model

app = Application.objects.select_related("company").order_by("id").first()
if not Feature.objects.filter(application=app).exists():
    for name, events in [("Search", ["search"]), ("Reports", ["report_run"]), ("Export", ["export_csv"]),
                         ("Invites", ["invite_sent"]), ("Comments", ["comment_added"])]:
        Feature.objects.create(application=app, name=name, events=events, path_prefixes=[])
user, _ = get_user_model().objects.get_or_create(username="health-bench")
Membership.objects.get_or_create(user=user, company=app.company, defaults={"role": "member"})
orgs = Organization.objects.filter(application=app).count()
started = time.perf_counter()
counts = organizations_scan(app=app)
scan = time.perf_counter() - started
client = Client(HTTP_HOST="localhost")
client.force_login(user)
base = f"/api/v1/analytics/apps/{app.uuid}/organizations"
org = (Organization.objects.filter(application=app).order_by("customer_org_id")
       .values_list("customer_org_id", flat=True).first())
def timed(url, params, n):
    client.get(url, params)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url, params)
        assert r.status_code == 200, r.content[:200]
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return {"p50": round(statistics.median(out), 1), "p95": round(out[int(0.95 * (len(out) - 1))], 1)}
n = int(os.environ["CALLS"])
print("CHILD_JSON " + json.dumps({
    "orgs": orgs, "scan_s": round(scan, 2), "counts": counts,
    "list": timed(base, {"sort": "-health"}, n),
    "list_at_risk": timed(base, {"bucket": "at_risk"}, n),
    "detail": timed(f"{base}/{org}", {}, n),
    "load": os.getloadavg()[0],
}))
"""


def run(tree: Path, db: str, calls: int) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="saastracker.settings.dev",
        DATABASE_URL=f"{PG}/{db}",
        LOG_LEVEL="WARNING",
        CALLS=str(calls),
        PYTHONPATH=str(tree),
    )
    load_before = os.getloadavg()[0]
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", CHILD],
        cwd=tree,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr[-3000:]}")
    out = out.stdout
    line = next(x for x in out.splitlines() if x.startswith("CHILD_JSON "))
    result = json.loads(line.split(" ", 1)[1])
    result["load_before"] = load_before
    return result


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="health_bench")
    p.add_argument("--control", default="/work/main", help="a tree with the code to compare against")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=20)
    args = p.parse_args()
    # One heavy run at a time on this machine (the lock every bench here takes).
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("[health-bench] another bench run is in progress; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    results: dict[str, list] = {"this": [], "control": []}
    for i in range(args.rounds):
        for name, tree in (("this", ROOT), ("control", Path(args.control))):
            started = time.time()
            r = run(tree, args.db, args.calls)
            results[name].append(r)
            print(
                f"[health-bench] round {i + 1} {name}: {r['orgs']:,} orgs rescored in {r['scan_s']} s; "
                f"list p95 {r['list']['p95']} ms, at_risk p95 {r['list_at_risk']['p95']} ms, detail p95 "
                f"{r['detail']['p95']} ms; load {r['load_before']:.1f} -> {r['load']:.1f} "
                f"({time.time() - started:.0f} s)",
                flush=True,
            )
    print("HEALTH_BENCH_JSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
