#!/usr/bin/env python3
"""Issue 18 item 4: tenant A's fold delay next to tenant B's organization scans, this tree vs a control.

    bench/scan_isolation.py [--db health_bench] [--orgs 50000] [--control /work/main] [--seconds 90]

On a database made by `bench/analytics_data.py` (its app is tenant B), tops tenant B up to `--orgs`
organizations (copies of its orgs' last 60 days of OrgDay rows under new ids, so every org has
history to score) and adds tenant A (another company). Then, for each tree in turn, it starts that
tree's real workers (`scripts/worker maintenance,analytics[,scans]`: beat folds every 2 s) on a
private Redis database, and for `--seconds`:
- tenant B sends one event every 5 s, so the fold schedules B's scan after each debounce (5 s here),
  as in the issue ("one event every 5 s");
- tenant A sends one event every 0.5 s; its fold delay is the time from the INSERT's commit until
  it is neither queued nor above the fold's cursor (polled every 50 ms).
Prints p50/p99/max of A's fold delay per tree, B's scans seen, and the load average.
"""

import argparse
import fcntl
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG  # noqa: E402

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/6")

INSERT = """
INSERT INTO ingest_event (event_id, application_id, company_id, event, user_hash, customer_org_id, path,
    session_id, session_inferred, environment, occurred_at, received_at, export_state, export_attempts,
    export_error, webhook_pending)
VALUES (%s, %s, %s, 'page_view', %s, %s, '/', %s, false, 'production', now(), now(), 2, 0, '', false)
RETURNING id
"""


def top_up(conn, app_b: int, orgs: int) -> None:
    """Tenant B up to `orgs` organizations, each with the OrgDay history of an existing one."""
    have = conn.execute("SELECT count(*) FROM analytics_organization WHERE application_id = %s", [app_b]).fetchone()[0]
    if have >= orgs:
        return
    conn.execute(
        """
        INSERT INTO analytics_organization (application_id, customer_org_id, first_seen, last_seen, over_limit,
            health_bucket, health_components)
        SELECT application_id, customer_org_id || '-copy' || g, first_seen, last_seen, false, '', '{}'::jsonb
        FROM analytics_organization o CROSS JOIN generate_series(1, %(copies)s) g
        WHERE application_id = %(app)s AND customer_org_id NOT LIKE '%%-copy%%'
        ORDER BY g, o.id LIMIT %(missing)s
        ON CONFLICT DO NOTHING
        """,
        {"app": app_b, "copies": orgs // max(1, have) + 1, "missing": orgs - have},
    )
    conn.execute(
        """
        INSERT INTO analytics_orgday (application_id, environment, day, customer_org_id, events, path_views)
        SELECT d.application_id, d.environment, d.day, o.customer_org_id, d.events, d.path_views
        FROM analytics_organization o
        JOIN analytics_orgday d ON d.application_id = o.application_id
            AND d.customer_org_id = split_part(o.customer_org_id, '-copy', 1)
        WHERE o.application_id = %s AND o.customer_org_id LIKE '%%-copy%%'
            AND d.day >= (now() AT TIME ZONE 'UTC')::date - 59
        ON CONFLICT DO NOTHING
        """,
        [app_b],
    )
    conn.execute("VACUUM ANALYZE analytics_organization")
    conn.execute("VACUUM ANALYZE analytics_orgday")


def tenant_a(conn) -> tuple[int, int]:
    row = conn.execute(
        "SELECT a.id, a.company_id FROM apps_registry_application a WHERE a.name = 'Tenant A'"
    ).fetchone()
    if row:
        return row
    company = conn.execute(
        "INSERT INTO apps_registry_company (name, plan_id, is_active, created_at)"
        " SELECT 'Tenant A', plan_id, true, now() FROM apps_registry_company ORDER BY id LIMIT 1 RETURNING id"
    ).fetchone()[0]
    app = conn.execute(
        "INSERT INTO apps_registry_application (uuid, company_id, name, is_active, environments, created_at)"
        " VALUES (%s, %s, 'Tenant A', true, '{}', now()) RETURNING id",
        [uuid.uuid4(), company],
    ).fetchone()[0]
    return app, company


def run_tree(tree: Path, db: str, app_a: tuple, app_b: tuple, seconds: float) -> dict:
    import psycopg
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    roles = (
        "maintenance,analytics,scans"
        if (tree / "analytics" / "health_backtest.py").exists()
        else ("maintenance,analytics")
    )
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="saastracker.settings.dev",
        DATABASE_URL=f"{PG}/{db}",
        REDIS_URL=REDIS,
        CELERY_BROKER_URL=REDIS,
        LOG_LEVEL="WARNING",
        CELERY_LOG_LEVEL="warning",
        ANALYTICS_SCAN_DEBOUNCE_SECONDS="5",
        CELERY_BEAT_SCHEDULE_FILE=os.path.join(tempfile.gettempdir(), f"scan-iso-beat-{os.getpid()}"),
        PORT=str(os.getpid()),
    )
    worker = subprocess.Popen(
        ["scripts/worker", roles], cwd=tree, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    delays: list[float] = []
    pending: dict[int, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(f"{PG}/{db}", autocommit=True) as conn:
            while not stop.is_set():
                with lock:
                    ids = list(pending)
                if ids:
                    queued = {
                        r[0]
                        for r in conn.execute(
                            "SELECT e FROM unnest(%s::bigint[]) e WHERE e IN (SELECT unnest(event_ids)"
                            " FROM analytics_foldqueue) OR e > (SELECT coalesce(max(queued_upto), 0)"
                            " FROM analytics_foldcursor WHERE source = 1)",
                            [ids],
                        )
                    }
                    now = time.monotonic()
                    with lock:
                        for i in ids:
                            if i not in queued:
                                delays.append(now - pending.pop(i))
                time.sleep(0.05)

    try:
        time.sleep(15)  # workers up, beat started
        with psycopg.connect(f"{PG}/{db}", autocommit=True) as conn:
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            load_start = os.getloadavg()[0]
            started = time.monotonic()
            next_b = started
            n = 0
            while time.monotonic() - started < seconds:
                if time.monotonic() >= next_b:
                    conn.execute(INSERT, [uuid.uuid4(), app_b[0], app_b[1], "b".ljust(64, "x"), "b-live", uuid.uuid4()])
                    next_b += 5
                (eid,) = conn.execute(
                    INSERT, [uuid.uuid4(), app_a[0], app_a[1], "a".ljust(64, "x"), f"a-{n % 10}", uuid.uuid4()]
                ).fetchone()
                with lock:
                    pending[eid] = time.monotonic()
                n += 1
                time.sleep(0.5)
            time.sleep(10)  # let the last ones fold
            stop.set()
            poller.join()
            scanned = conn.execute(
                "SELECT count(*), max(scanned_at) - min(scanned_at) FROM analytics_organization"
                " WHERE application_id = %s AND scanned_at > now() - make_interval(secs => %s)",
                [app_b[0], seconds + 25],
            ).fetchone()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
    with lock:
        unfolded = len(pending)
    delays.sort()
    return {
        "tree": str(tree),
        "roles": roles,
        "events_a": n,
        "folded_a": len(delays),
        "unfolded_a": unfolded,
        "delay_p50_s": round(statistics.median(delays), 2) if delays else None,
        "delay_p99_s": round(delays[int(0.99 * (len(delays) - 1))], 2) if delays else None,
        "delay_max_s": round(delays[-1], 2) if delays else None,
        "b_orgs_scanned_during_run": scanned[0],
        "load_start": round(load_start, 1),
        "load_end": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    import psycopg

    p = argparse.ArgumentParser()
    p.add_argument("--db", default="health_bench")
    p.add_argument("--orgs", type=int, default=50_000)
    p.add_argument("--control", default="/work/main")
    p.add_argument("--seconds", type=float, default=90)
    p.add_argument("--no-control", action="store_true", help="run this tree only")
    args = p.parse_args()
    # One heavy run at a time on this machine (the lock every bench here takes).
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("[scan-isolation] another bench run is in progress; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    with psycopg.connect(f"{PG}/{args.db}", autocommit=True) as conn:
        app_b = conn.execute(
            "SELECT id, company_id FROM apps_registry_application WHERE name <> 'Tenant A' ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE apps_registry_company SET orgs_max_override = %s WHERE id = %s", [args.orgs * 2, app_b[1]])
        top_up(conn, app_b[0], args.orgs)
        app_a = tenant_a(conn)
        orgs_b = conn.execute(
            "SELECT count(*) FROM analytics_organization WHERE application_id = %s", [app_b[0]]
        ).fetchone()[0]
    print(f"[scan-isolation] tenant B: {orgs_b:,} orgs", flush=True)
    results = []
    for tree in (ROOT,) if args.no_control else (ROOT, Path(args.control)):
        r = run_tree(tree, args.db, app_a, app_b, args.seconds)
        print(f"[scan-isolation] {json.dumps(r)}", flush=True)
        results.append(r)
    print("SCAN_ISOLATION_JSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
