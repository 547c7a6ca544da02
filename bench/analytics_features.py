#!/usr/bin/env python3
"""Feature adoption with many prefixes: `features_list` and `organization_get`, two code trees side by side.

    bench/analytics_features.py --before DIR [--after DIR] [--db analytics_features_bench] [--events 2000000]
                                [--features 20] [--prefixes 1000] [--rounds 3] [--reuse]

Builds the analytics data set (bench/analytics_data.py: `--events` events over 90 days, 1,000 orgs,
50 paths `/section/N`) and folds it, then defines `--features` features of `--prefixes` path prefixes
each, straight in SQL (feature k: `/section/k` and prefixes that match nothing, ~60 characters each),
as the issue's attacker did before the caps existed (1,000 prefixes is also the cap per feature).

Each round runs, in a fresh process per code tree (`--before`, e.g. a checkout of main, then `--after`,
this tree; alternating, so load drifts hit both alike), over the default 30-day window:
`features_list` (the `GET …/features` answer) and `organization_get` for `org_1` (the organization
page's figures), each twice: `cold` (the process's first read, bitmaps fetched and decoded) and
`warm`. Times are the selector call in-process (no HTTP), with the load average before each run.
Prints `FEATURES_BENCH_JSON {...}`.
"""

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
if (
    __name__ == "__main__"
    and VENV_PY.exists()
    and Path(sys.prefix).resolve() != VENV_PY.parent.parent.resolve()
    and not os.environ.get("BENCH_REEXEC")
):
    os.environ["BENCH_REEXEC"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])  # noqa: S606 (our own venv, same arguments)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analytics_data import bench_env, fold_all, generate  # noqa: E402 - after the re-exec into the venv
from common import PG, python  # noqa: E402

# Runs inside `manage.py shell` of one code tree; prints one JSON line.
PROBE = """
import json, time
from analytics.selectors import default_window, features_list, organization_get
from apps_registry.models import Application
app = Application.objects.get(uuid=%(app)r)
date_from, date_to = default_window()
out = {}
for name, call in (
    ("features", lambda: features_list(app=app, date_from=date_from, date_to=date_to, environment=None)),
    ("organization", lambda: organization_get(app=app, customer_org_id="org_1", date_from=date_from,
                                                date_to=date_to, environment=None)),
):
    for state in ("cold", "warm"):
        started = time.perf_counter()
        answer = call()
        out[f"{name}_{state}_s"] = round(time.perf_counter() - started, 3)
    out[f"{name}_check"] = (
        sorted((f["name"], f["orgs_adopted"], f["users"]) for f in answer["features"])
        if name == "features" else answer["features_used"]
    )
print("PROBE " + json.dumps(out))
"""


def features_define(db: str, *, app_id: int, features: int, prefixes: int) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/{db}", autocommit=True) as conn:
        conn.execute("DELETE FROM analytics_feature WHERE application_id = %s", [app_id])
        for k in range(features):
            rules = [f"/section/{k}"] + [
                f"/section/{k}/settings/sub-{j:04d}/".ljust(60, "x") for j in range(prefixes - 1)
            ]
            conn.execute(
                "INSERT INTO analytics_feature (application_id, name, events, path_prefixes, created_at)"
                " VALUES (%s, %s, '{}', %s, now())",
                [app_id, f"feature_{k:02d}", rules],
            )


def probe(tree: Path, db: str, app_uuid: str) -> dict:
    load = os.getloadavg()
    env = bench_env(db)
    env.pop("BENCH_REEXEC", None)
    done = subprocess.run(
        [python(), "manage.py", "shell", "-c", PROBE % {"app": app_uuid}],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    return {**json.loads(line[6:]), "load1": round(load[0], 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--before", required=True, type=Path, help="the code tree to compare against (e.g. main)")
    p.add_argument("--after", default=ROOT, type=Path)
    p.add_argument("--db", default="analytics_features_bench")
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--prefixes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reuse", action="store_true", help="keep the database of a previous run")
    args = p.parse_args()
    import psycopg

    # One heavy run at a time on this machine (the lock every bench here takes).
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another bench run is in progress; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)

    if args.reuse:
        with psycopg.connect(f"{PG}/{args.db}") as conn:
            app_uuid, app_id = conn.execute("SELECT uuid::text, id FROM apps_registry_application").fetchone()
        data = {"db": args.db, "app_uuid": app_uuid, "app_id": app_id}
    else:
        data = generate(db=args.db, events=args.events)
        data.update(fold_all(args.db))
    features_define(args.db, app_id=data["app_id"], features=args.features, prefixes=args.prefixes)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for n in range(args.rounds):
        for label, tree in (("before", args.before), ("after", args.after)):
            result = probe(tree, args.db, data["app_uuid"])
            runs[label].append(result)
            print(
                f"round {n + 1} {label:6}: features cold {result['features_cold_s']} s, warm "
                f"{result['features_warm_s']} s; organization cold {result['organization_cold_s']} s, warm "
                f"{result['organization_warm_s']} s (load {result['load1']})",
                flush=True,
            )
    same = all(r["features_check"] == runs["before"][0]["features_check"] for rs in runs.values() for r in rs)
    summary = {
        label: {
            key: statistics.median(r[key] for r in rs)
            for key in ("features_cold_s", "features_warm_s", "organization_cold_s", "organization_warm_s")
        }
        for label, rs in runs.items()
    }
    print(f"same answers before and after: {same}")
    print("FEATURES_BENCH_JSON " + json.dumps({**data, "summary": summary, "same_answers": same, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
