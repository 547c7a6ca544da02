#!/usr/bin/env python3
"""The analytics benchmark data set, generated with SQL (generate_series), never through HTTP.

    bench/analytics_data.py [--db analytics_bench] [--events 10000000] [--days 90] [--orgs 1000]
                            [--users 50000] [--fold] [--keep]

Creates (or, without --keep, recreates) the database, migrates it, creates a company and an app, and
inserts `--events` `/v1/events` rows over the last `--days` UTC days (today included), in chunks of
one million rows per INSERT ... SELECT generate_series. The shape, chosen to look like a B2B SaaS:
- users belong to one org each (user u → org u % orgs), every user is active on 1 day in 5
  (DAU ≈ users / 5), and an active user sends ~events / days / (users / 5) events that day,
  in two sessions;
- 20 event names (page_view most frequent), 60 % of events carry one of 50 paths;
- environments: `production`, and `staging` for one user in ten;
- ids follow time (each day's rows are contiguous, oldest day first), as ingest stores them;
- with partitioned raw tables (`ingest/partitions.py` present), every raw table is cut into a new
  id block (`partitions_cut_all`) after each 7 days of data, as the weekly beat task does live, so
  the rows spread over ~13 weekly partitions for 90 days;
- rows are EXPORTED (BigQuery is not part of this benchmark) and queued for the analytics fold (the
  trigger of analytics' migration 0003), so `--fold` (or the worker) folds them into the rollups.
Prints `ANALYTICS_DATA_JSON {"db", "app_uuid", "company", "events", "insert_seconds", ...}`.

Other benchmarks import `generate(...)` (same arguments) to build the same data in their own database.
"""

import argparse
import datetime
import fcntl
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
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
from common import PG, python  # noqa: E402 - after the re-exec into the venv

CHUNK = 1_000_000
# Stored rows not folded yet: queued, or above the fold's cursor (analytics.fold.unfolded_sql).
_UNFOLDED = """(SELECT count(*) FROM {table} e WHERE e.id = ANY(ARRAY(
    SELECT unnest(event_ids) FROM analytics_foldqueue WHERE source = {source}))
    OR e.id > (SELECT coalesce(max(queued_upto), 0) FROM analytics_foldcursor WHERE source = {source}))"""
QUEUED_SQL = (
    f"SELECT {_UNFOLDED.format(table='ingest_event', source=1)} + {_UNFOLDED.format(table='ingest_sdkevent', source=2)}"
)
EVENT_NAMES = [
    "page_view",
    "page_view",
    "page_view",
    "page_view",
    "page_view",
    "click",
    "search",
    "report_run",
    "export_csv",
    "invite_sent",
    "comment_added",
    "file_uploaded",
    "dashboard_viewed",
    "filter_applied",
    "settings_changed",
    "integration_connected",
    "billing_viewed",
    "api_key_created",
    "onboarding_step",
    "logout",
]

# One chunk of rows [%(lo)s, %(hi)s) of %(total)s. Every value is derived from the row number i, so the
# data set is the same on every run (only "today" moves). Rows are in time order, as ingest stores
# them: day d (oldest first) holds a contiguous run of ids, `j` numbers the rows of a day.
INSERT_SQL = """
INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts,
    export_error, webhook_pending, event_id, event, user_hash, customer_org_id, path, session_id, session_inferred,
    plan, environment, occurred_at, properties)
SELECT %(company)s, %(app)s, ts, 1, 1, '', false, gen_random_uuid(),
    (%(names)s::text[])[1 + (i * 31) %% 20],
    md5('u' || u) || md5('v' || u),
    'org_' || (u %% %(orgs)s),
    CASE WHEN i %% 5 < 3 THEN '/section/' || ((i * 13) %% 50) END,
    md5(u || '-' || d || '-' || (j %% 2))::uuid,
    false, NULL,
    CASE WHEN u %% 10 = 0 THEN 'staging' ELSE 'production' END,
    ts, NULL
FROM (
    SELECT i, d, j, u,
        ((%(today)s::date - d::int) + make_interval(secs => (j * 86400 / %(per_day)s) + (i %% 7)))
            AT TIME ZONE 'UTC' AS ts
    FROM (
        SELECT i, d, j, (((j * 7919) %% %(active)s) * 5 + d %% 5) AS u
        FROM (
            SELECT i, %(days)s - 1 - (i * %(days)s / %(total)s) AS d,
                i - ((i * %(days)s / %(total)s) * %(total)s + %(days)s - 1) / %(days)s AS j
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
        ) a
    ) base
) rows
"""


def log(msg: str) -> None:
    print(f"[analytics-data] {msg}", flush=True)


def _manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [python(), "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


PARTITIONED = (ROOT / "ingest" / "partitions.py").exists()


def week_starts(events: int, days: int) -> list[int]:
    """The first row of each 7-day block of data after the first (row i is on day i * days // events
    counted from the oldest, so day k starts at row ceil(k * events / days))."""
    return [(k * events + days - 1) // days for k in range(7, days, 7)]


def partitions_cut(env: dict, at: datetime.datetime) -> None:
    """Every raw table into a new id block (a new partition) at the data's time `at`, as the weekly
    beat task does."""
    code = (
        "from datetime import datetime; from ingest.partitions import partitions_cut_all;"
        f" partitions_cut_all(now=datetime.fromisoformat('{at.isoformat()}'))"
    )
    _manage(env, "shell", "-c", code)


def bench_env(db: str) -> dict:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="saastracker.settings.dev", DATABASE_URL=f"{PG}/{db}", LOG_LEVEL="WARNING")
    return env


def generate(
    *, db: str, events: int, days: int = 90, orgs: int = 1000, users: int = 50_000, keep: bool = False
) -> dict:
    """Create `db` with the data set; return its description (app uuid, timings)."""
    import psycopg

    if not keep:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
    env = bench_env(db)
    _manage(env, "migrate", "--noinput", "-v", "0")
    out = _manage(env, "create_application", "--company", "Bench Analytics", "--name", "Bench", "--json")
    app_uuid = json.loads(out.strip().splitlines()[-1])["app_uuid"]
    with psycopg.connect(f"{PG}/{db}", autocommit=True) as conn:
        company, app = conn.execute(
            "SELECT company_id, id FROM apps_registry_application WHERE uuid = %s", [app_uuid]
        ).fetchone()
        conn.execute(
            "UPDATE apps_registry_company SET events_per_month_override = 1000000000, orgs_max_override = %s"
            " WHERE id = %s",
            [orgs, company],
        )
        today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]
        started = time.monotonic()
        # With partitioned raw tables (ingest/partitions.py), a cut after every 7 days of data, as the
        # weekly beat task does live: each week's rows land in a partition of their own.
        cuts = set(week_starts(events, days)) if PARTITIONED else set()
        bounds = sorted({*range(0, events, CHUNK), *cuts, events})
        for lo, hi in itertools.pairwise(bounds):
            if lo in cuts:  # the data's day of row lo, midnight UTC
                day = today - datetime.timedelta(days=days - 1 - lo * days // events)
                partitions_cut(env, datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC))
                log(f"partitions cut before row {lo:,}")
            conn.execute(
                INSERT_SQL,
                {
                    "company": company,
                    "app": app,
                    "names": EVENT_NAMES,
                    "orgs": orgs,
                    "days": days,
                    "active": max(1, users // 5),
                    "today": today,
                    "lo": lo,
                    "hi": hi,
                    "total": events,
                    "per_day": max(1, events // days),
                },
            )
            log(f"{hi:,}/{events:,} rows")
        insert_seconds = time.monotonic() - started
        conn.execute("ANALYZE ingest_event")
    return {
        "db": db,
        "app_uuid": app_uuid,
        "app_id": app,
        "company_id": company,
        "events": events,
        "days": days,
        "orgs": orgs,
        "users": users,
        "insert_seconds": round(insert_seconds, 1),
    }


def fold_all(db: str, *, processes: int = 2) -> dict:
    """Fold every pending row with `processes` folders side by side; returns rows and seconds."""
    import psycopg

    with psycopg.connect(f"{PG}/{db}") as conn:
        pending = conn.execute(QUEUED_SQL).fetchone()[0]
    env = bench_env(db)
    code = "from analytics.fold import fold_drain; fold_drain(budget_seconds=36000)"
    started = time.monotonic()
    folders = [
        subprocess.Popen([python(), "manage.py", "shell", "-c", code], cwd=ROOT, env=env) for _ in range(processes)
    ]
    for folder in folders:
        folder.wait()
    seconds = time.monotonic() - started
    with psycopg.connect(f"{PG}/{db}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"folded": pending, "fold_seconds": round(seconds, 1), "fold_events_per_s": round(pending / seconds)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--db", default="analytics_bench")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--orgs", type=int, default=1000)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--fold", action="store_true", help="fold every row into the rollups afterwards")
    p.add_argument("--keep", action="store_true", help="add to an existing database instead of recreating it")
    args = p.parse_args()
    # One heavy run at a time on this machine (the lock every bench here takes).
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another bench run is in progress; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    result = generate(db=args.db, events=args.events, days=args.days, orgs=args.orgs, users=args.users, keep=args.keep)
    log(f"inserted {args.events:,} events in {result['insert_seconds']} s")
    if args.fold:
        result.update(fold_all(args.db))
        log(f"folded {result['folded']:,} rows in {result['fold_seconds']} s")
    print("ANALYTICS_DATA_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
