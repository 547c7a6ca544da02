#!/usr/bin/env python3
"""PostgreSQL's CPU for the SDK batch INSERT (with and without the old fold-queue trigger, where it exists).

    bench/ingest_statement_cost.py [--db bench_saastracker] [--statements 1500] [--rounds 2] [--no-trigger-toggle]

Runs the production statement (`ingest.services.sdk_events._INSERT`, prepared, autocommit) with
20-event batches against the database of `bench/ingest.py` and reads the CPU time of its own
PostgreSQL backend: the server's cost per statement, with no web process or client in the figure.
It alternates rounds with the `analytics_fold_queue` trigger enabled and disabled (re-enabled at
the end), so the trigger's share is measured in the same minute. `--no-trigger-toggle` runs the
statement as it is, e.g. on a database of an older commit (`bench_saastracker_cmp_<sha>`); so does a
database without the trigger (analytics migration 0007 replaced it by the fold's cursor).
"""

import argparse
import json
import os
import subprocess
import time
import uuid

import psutil
import psycopg
from common import PG, ROOT, python

TRIGGER = "analytics_fold_queue"


def statement() -> str:
    code = "import django; django.setup(); from ingest.services.sdk_events import _INSERT; print(_INSERT)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "saastracker.settings.test"}
    return subprocess.run([python(), "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout


def batch_rows() -> str:
    now = int(time.time() * 1000)
    return json.dumps(
        [
            {
                "event_id": str(uuid.uuid4()),
                "event_name": "screen_view",
                "ts_ms": now,
                "anon_id": str(uuid.uuid4()),
                "user_id": "user-1",
                "platform": "ios",
                "os": "17.0",
                "app_version": "1.0.0",
                "sdk_version": "1.0.0",
                "locale": "en_US",
                "bundle_version": 3,
                "country": "US",
                "session_id": str(uuid.uuid4()),
                "properties": {"screen": "home", "n": 1},
                "consent": True,
            }
            for _ in range(20)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="bench_saastracker")
    parser.add_argument("--statements", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-trigger-toggle", action="store_true")
    args = parser.parse_args()
    sql = statement()
    with psycopg.connect(f"{PG}/{args.db}", autocommit=True) as conn:
        app_id, company_id = conn.execute(
            "select id, company_id from apps_registry_application order by id desc limit 1"
        ).fetchone()
        backend = psutil.Process(conn.execute("select pg_backend_pid()").fetchone()[0])

        def per_statement(n: int) -> float:
            params = [
                {"company_id": company_id, "app_id": app_id, "received_at": "now", "rows": batch_rows()}
                for _ in range(n)
            ]
            before = sum(backend.cpu_times()[:2])
            for p in params:
                conn.execute(sql, p, prepare=True)
            return (sum(backend.cpu_times()[:2]) - before) / n * 1e6

        exists = "select exists (select 1 from pg_trigger where tgname = %s)"
        has_trigger = conn.execute(exists, [TRIGGER]).fetchone()[0]
        args.no_trigger_toggle = args.no_trigger_toggle or not has_trigger
        labels = ["as is"] if args.no_trigger_toggle else ["trigger on", "trigger off"]
        try:
            for round_no in range(args.rounds):
                for label in labels:
                    if not args.no_trigger_toggle:
                        state = "enable" if label == "trigger on" else "disable"
                        conn.execute(f"alter table ingest_sdkevent {state} trigger {TRIGGER}")
                    per_statement(100)  # warm-up: plan cache, the trigger function's compiled plan
                    cost = per_statement(args.statements)
                    print(f"round {round_no + 1} {label}: {cost:.0f} us PostgreSQL CPU per 20-event INSERT", flush=True)
        finally:
            if not args.no_trigger_toggle:
                conn.execute(f"alter table ingest_sdkevent enable trigger {TRIGGER}")


if __name__ == "__main__":
    main()
