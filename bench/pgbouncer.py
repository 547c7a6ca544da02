#!/usr/bin/env python3
"""`POST /v1/events` through PgBouncer (transaction mode) beside direct, alternating in one run.

    bench/pgbouncer.py [--rounds 3] [--duration 10] [--connections 16] [--pool-size 8]

Each round runs the production server three times on the bench database: straight to PostgreSQL
(prepared statements on the hot path), straight with `DATABASE_POOLER=pgbouncer` (what not preparing
costs, without the extra hop) and through a private PgBouncer (Debian's 1.18,
`pool_mode = transaction`, `default_pool_size = --pool-size`) with `DATABASE_POOLER=pgbouncer`
(no prepared statements), each driven by wrk with the shared `requests.lua` like bench/ingest.py.
The order rotates per round (the machine is shared: a noisy minute hits both). Prints req/s,
p50/p99, non-2xx, stored vs acknowledged rows and the load average before each run; one final
`BENCH_JSON {...}` line. Needs wrk and pgbouncer (`apt-get install -y pgbouncer`).
"""

import argparse
import fcntl
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import PG, ROOT, database_prepare, free_port, stop

sys.path.insert(0, str(ROOT))
from tests.fixtures.pgbouncer import PgBouncer, pgbouncer_missing

_spec = importlib.util.spec_from_file_location("bench_ingest", Path(__file__).with_name("ingest.py"))
assert _spec is not None
assert _spec.loader is not None
bench_ingest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_ingest)


VARIANTS = ["direct", "pgbouncer", "direct-unprepared"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=3, help="each variant first once in every 3 rounds")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--pool-size", type=int, default=8, help="PgBouncer server connections")
    p.add_argument("--n", type=int, default=200_000, help="distinct single events generated")
    args = p.parse_args()
    for missing in (shutil.which("wrk") is None and "wrk is not installed", pgbouncer_missing()):
        if missing:
            sys.exit(missing)
    shared = bench_ingest.shared_bench()
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another bench run is in progress; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)

    db_name = bench_ingest.DB_NAME
    workdir = Path(tempfile.mkdtemp(prefix="saastracker-bench-pgbouncer-"))
    base_env = bench_ingest.server_env(free_port())
    database_prepare(base_env, db_name)
    bench_ingest.tables_empty()
    app = bench_ingest.application_new(base_env)
    bench_ingest.requests_generate(shared, workdir / "requests", app, n=args.n, batches=1)
    host, port = PG.rsplit("@", 1)[1].rsplit(":", 1)
    bouncer = PgBouncer(host=host, port=int(port), user=PG.split("//", 1)[1].split("@", 1)[0], pool_size=args.pool_size)
    bouncer.start()
    runs: list[dict] = []
    try:
        for round_ in range(args.rounds):
            order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]  # each variant first once in 3 rounds
            for variant in order:
                server_port = free_port()
                env = bench_ingest.server_env(server_port)
                if variant == "pgbouncer":
                    env.update(DATABASE_URL=bouncer.url(db_name), DATABASE_POOLER="pgbouncer")
                elif variant == "direct-unprepared":  # the pooler's settings without the pooler: what preparing saves
                    env.update(DATABASE_POOLER="pgbouncer")
                load = os.getloadavg()[0]
                proc = bench_ingest.server_start(env, workdir / f"server-{variant}-{round_}.log")
                try:
                    before = bench_ingest.stored_count("single", app["app_id"])
                    run = bench_ingest.wrk_run(shared, workdir / "requests", "single", server_port, args)
                    time.sleep(0.5)
                    stored = bench_ingest.stored_count("single", app["app_id"]) - before
                finally:
                    stop(proc)
                result = {
                    "round": round_ + 1,
                    "variant": variant,
                    "load": round(load, 2),
                    "rps": run["rps"],
                    "p50_ms": run["p50_ms"],
                    "p99_ms": run["p99_ms"],
                    "non2xx": run["non2xx"],
                    "socket_errors": run["socket_errors"],
                    "acknowledged": run["requests"] - run["non2xx"],
                    "stored": stored,
                }
                runs.append(result)
                print(
                    f"round {result['round']} {variant:17}: load {result['load']:5}  {run['rps']} req/s  "
                    f"p50 {run['p50_ms']} ms  p99 {run['p99_ms']} ms  non-2xx {run['non2xx']}  "
                    f"stored {stored} of {result['acknowledged']} acknowledged",
                    flush=True,
                )
    finally:
        bouncer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for variant in VARIANTS:
        rates = [r["rps"] for r in runs if r["variant"] == variant]
        print(f"{variant}: mean {sum(rates) / len(rates):.0f} req/s over {len(rates)} runs")
    print("BENCH_JSON " + json.dumps(runs))
    return 1 if any(r["non2xx"] or r["socket_errors"] or r["stored"] < r["acknowledged"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
