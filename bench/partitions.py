#!/usr/bin/env python3
"""Retention by partition drop against the row-by-row delete of the same rows.

    bench/partitions.py [--rows 1000000] [--rounds 2]

Creates (again) the database `partitions_bench` (dev settings, migrated), one company keeping
events 30 days, and per trial one closed weekly partition of `ingest_event` holding `--rows`
`/v1/events` rows received 95 days ago, exported and folded (the cursors are set past them), then
VACUUM ANALYZE, as a live table's old week would be. Then, alternating, in rounds:
- drop: `retention_apply()` finds the partition past retention and owed nothing, and drops it;
- delete: the same kind of partition, registered as still taking rows, so retention deletes its
  rows in batches of 5,000, as it did before partitions; then the VACUUM that reclaims them, which
  that way of deleting leaves to autovacuum.
Each prints wall seconds, WAL bytes written (pg_current_wal_lsn before and after) and the
table's size after. Takes the machine-wide bench lock (BENCH_LOCK).
"""

import argparse
import fcntl
import os
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
sys.path.insert(0, str(ROOT))
from common import PG, manage, psql  # noqa: E402 - after the re-exec into the venv

DB_NAME = "partitions_bench"
INSERT_SQL = """
INSERT INTO ingest_event (company_id, application_id, received_at, export_state, export_attempts, export_error,
    webhook_pending, event_id, event, user_hash, customer_org_id, path, session_id, session_inferred, occurred_at)
SELECT %(company)s, %(app)s, now() - interval '95 days' + i * interval '1 millisecond', 1, 1, '', false,
    gen_random_uuid(), 'page_view', md5('u' || (i %% 5000)), 'org_' || (i %% 300), '/section/' || (i %% 50),
    md5('s' || (i %% 9000))::uuid, false, now() - interval '95 days' + i * interval '1 millisecond'
FROM generate_series(1, %(rows)s) i
"""


def log(message: str) -> None:
    print(f"[partitions] {message}", flush=True)


def setup() -> tuple[int, int]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="saastracker.settings.dev", DATABASE_URL=f"{PG}/{DB_NAME}")
    psql(f"{PG}/postgres", f"drop database if exists {DB_NAME} with (force)")
    psql(f"{PG}/postgres", f"create database {DB_NAME}")
    manage(env, "migrate", "--noinput")
    os.environ.update(env)
    import django

    django.setup()
    from apps_registry.services import application_create, company_get_or_create

    company = company_get_or_create(name="bench-retention", tier="enterprise")
    company.retention_days_override = 30
    company.save()
    app = application_create(company=company, name="bench").application
    return company.id, app.id


def week_fill(company: int, app: int, rows: int) -> int:
    """One closed weekly partition of `rows` old, exported, folded events; returns its number."""
    from django.db import connection
    from django.utils import timezone

    from ingest.partitions import partition_cut
    from ingest.services.retention import retention_apply

    now = timezone.now()
    number = partition_cut("ingest_event", now=now - timedelta_days(100))
    retention_apply()  # the earlier trial's empty partition goes now, not in the timed run
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, {"company": company, "app": app, "rows": rows})
    partition_cut("ingest_event", now=now - timedelta_days(93))
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM ingest_event")
        (upto,) = cursor.fetchone()
        cursor.execute("UPDATE ingest_exportcursor SET claimed_upto = %s, safe_upto = %s", [upto, upto])
        cursor.execute(
            "INSERT INTO analytics_foldcursor (source, queued_upto, safe_upto, horizon_id, horizon_holders)"
            " VALUES (1, %s, %s, %s, '{}') ON CONFLICT (source) DO UPDATE SET queued_upto = EXCLUDED.queued_upto,"
            " safe_upto = EXCLUDED.safe_upto, horizon_id = EXCLUDED.horizon_id",
            [upto, upto, upto],
        )
        cursor.execute("VACUUM ANALYZE ingest_event")
    return number


def timedelta_days(days: int):
    from datetime import timedelta

    return timedelta(days=days)


def measured(action) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        (before,) = cursor.fetchone()
        started = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - started
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint", [before])
        (wal,) = cursor.fetchone()
    return {"seconds": seconds, "wal_bytes": int(wal), **result}


def trial(company: int, app: int, rows: int, how: str) -> dict:
    from django.db import connection

    from ingest.models import RawPartition
    from ingest.services.retention import retention_apply

    number = week_fill(company, app, rows)
    if how == "delete":  # registered as still open: retention deletes its rows, as before partitions
        RawPartition.objects.filter(table="ingest_event", number=number).update(opened_at=None, closed_at=None)
    result = measured(lambda: retention_apply(budget_seconds=3600))
    out = {"how": how, "rows": rows, "seconds": result["seconds"], "wal_mb": result["wal_bytes"] / 1e6}
    out["dropped"] = result["partitions_dropped"]
    out["deleted"] = result["events"]
    if how == "delete":
        vacuum = measured(lambda: _vacuum(number))
        out["vacuum_seconds"], out["vacuum_wal_mb"] = vacuum["seconds"], vacuum["wal_bytes"] / 1e6
        with connection.cursor() as cursor:  # the empty partition goes too, so the next trial starts alike
            cursor.execute(f"DROP TABLE ingest_event_p{number}")
    return out


def _vacuum(number: int) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ingest_event_p{number}")
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        company, app = setup()
        results = []
        for round_number in range(args.rounds):
            for how in ("drop", "delete") if round_number % 2 == 0 else ("delete", "drop"):
                log(f"round {round_number + 1}: {how} of {args.rows:,} rows")
                results.append(trial(company, app, args.rows, how))
                log(str(results[-1]))
    print("\n| round | how | rows | seconds | WAL MB | VACUUM seconds | VACUUM WAL MB |\n|---|---|---|---|---|---|---|")
    for index, r in enumerate(results):
        print(
            f"| {index // 2 + 1} | {r['how']} | {r['rows']:,} | {r['seconds']:.2f} | {r['wal_mb']:.1f} |"
            f" {r.get('vacuum_seconds', 0):.2f} | {r.get('vacuum_wal_mb', 0):.1f} |"
        )


if __name__ == "__main__":
    main()
