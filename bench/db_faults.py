#!/usr/bin/env python3
"""Ingest against a PRIVATE PostgreSQL cluster that is restarted or crashed under load.

    bench/db_faults.py --scenario restart [--duration 10] [--restart-mode fast|immediate] [--no-baseline]
    bench/db_faults.py --scenario crash [--duration 20] [--crashes 5] [--senders 32]

Both start their own cluster (initdb in a temp dir, fsync on, a free port; never the machine's
PostgreSQL), migrate it, create an application and start `scripts/serve` (granian, prod settings,
2 workers x 16 threads) against it.

restart (issue 9, item 11): single-event throughput with wrk and the shared `requests.lua`, in
four phases of `--duration` seconds: `before`, `restart` (PostgreSQL restarted with a fast
shutdown 3 s into it), `after` and `after2`. Throughput after the restart should be back to the
`before` level. The shared baseline (`../shared/bench/baseline`) runs first, as in bench/ingest.py.

crash (issue 9, item 7): `--senders` Python threads send signed `/v1/events` (and SDK batches with
`--protocol both`) for `--duration` seconds, each request with a unique marker (the `path`, or the
batch's event ids), while PostgreSQL is crashed (immediate shutdown, then started again) `--crashes`
times. Afterwards every answer is compared with the stored rows: a 503 whose event is stored is
an in-doubt commit answered untruthfully (a retry without Idempotency-Key stores it twice), a 2xx
whose event is missing is a lost event. Prints `FAULTS_JSON {...}`; exit 1 if either is non-zero.
"""

import argparse
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import ROOT, free_port, manage, prod_env, sdk_event, stop, tree_cpu, worker_start

sys.path.append(str(ROOT))  # appended: `ingest` below must stay this folder's bench/ingest.py
import ingest as ingest_bench
from tests.fixtures.private_services import PrivatePostgres

DB_NAME = "faults_bench"


def cluster_ready(env_extra: dict) -> tuple[PrivatePostgres, dict]:
    pg = PrivatePostgres(
        fsync=True,
        settings={"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track_planning": "on"},
    )
    pg.start()
    pg.psql(f"create database {DB_NAME}")
    pg.psql("create extension if not exists pg_stat_statements", DB_NAME)
    port = free_port()
    env = prod_env(
        db_name=DB_NAME,
        port=port,
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        WEB_THREADS=os.environ.get("WEB_THREADS", "16"),
        **env_extra,
    )
    env["DATABASE_URL"] = pg.url(DB_NAME)
    manage(env, "migrate", "--noinput")
    return pg, env


def stored_single(pg: PrivatePostgres, app_id: int) -> int:
    return int(pg.psql(f"select count(*) from ingest_event where application_id = {int(app_id)}", DB_NAME))  # noqa: S608


def scenario_restart(args) -> int:
    shared = ingest_bench.shared_bench()
    baseline = None if args.no_baseline else ingest_bench.baseline_run(shared, args)
    if baseline:
        print(f"baseline: {json.dumps(baseline)}", flush=True)
    pg, env = cluster_ready({})
    workdir = Path(tempfile.mkdtemp(prefix="saastracker-faults-"))
    proc = worker = None
    phases: dict = {}
    try:
        app = ingest_bench.application_new(env)
        ingest_bench.requests_generate(shared, workdir / "requests", app, n=args.n, batches=10)
        proc = ingest_bench.server_start(env, workdir / "server.log")
        if args.worker:  # the whole service, as deployed: its Celery workers on the same database
            worker = worker_start(env, workdir / "worker.log", timeout=120)
        ingest_bench.wrk_run(shared, workdir / "requests", "single", int(env["PORT"]), _short(args))  # warm-up
        for phase in ("before", "restart", "after", "after2"):
            restarter = None
            if phase == "restart" and args.restart_mode != "none":
                restarter = threading.Timer(3.0, pg.restart, kwargs={"mode": args.restart_mode})
                restarter.start()
            before = stored_single(pg, app["app_id"])
            pg.psql("select pg_stat_statements_reset()", DB_NAME)
            worker_pid = worker.pid if worker else 0
            cpu_before = (tree_cpu(proc.pid), tree_cpu(postmaster_pid(pg)), tree_cpu(worker_pid))
            run = ingest_bench.wrk_run(shared, workdir / "requests", "single", int(env["PORT"]), args)
            cpu_after = (tree_cpu(proc.pid), tree_cpu(postmaster_pid(pg)), tree_cpu(worker_pid))
            if restarter is not None:
                restarter.join()
            time.sleep(0.5)
            stored = stored_single(pg, app["app_id"]) - before
            ok = run["requests"] - run["non2xx"]
            phases[phase] = {
                "rps": run["rps"],
                "p50_ms": run["p50_ms"],
                "p99_ms": run["p99_ms"],
                "non2xx": run["non2xx"],
                "socket_errors": run["socket_errors"],
                "missing": max(0, ok - stored),
                # Per stored event: statements PostgreSQL ran and planned (from pg_stat_statements).
                # A drop in group size or a lost statement cache after the restart shows here.
                **per_event_statements(pg, stored),
                # CPU per request of the web workers and of PostgreSQL (all its processes): unlike req/s,
                # barely moved by other load on the machine. Not comparable in the `restart` phase
                # (the old server's processes are gone by its end).
                "web_cpu_ms_per_req": round(1000 * (cpu_after[0] - cpu_before[0]) / max(run["requests"], 1), 3),
                "pg_cpu_ms_per_req": round(1000 * (cpu_after[1] - cpu_before[1]) / max(run["requests"], 1), 3),
                "worker_cpu_s": round(cpu_after[2] - cpu_before[2], 2),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
            print(f"{phase}: {json.dumps(phases[phase])}", flush=True)
    finally:
        stop(proc)
        stop(worker)
        pg.destroy()
    ratio = round(phases["after2"]["rps"] / phases["before"]["rps"], 3)
    print(f"throughput after the restart / before: {ratio}")
    print("BENCH_JSON " + json.dumps({"baseline": baseline, **phases, "after2_over_before": ratio}))
    missing = sum(p["missing"] for p in phases.values())
    return 1 if missing or ratio < 0.85 else 0


def postmaster_pid(pg: PrivatePostgres) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def per_event_statements(pg: PrivatePostgres, events: int) -> dict:
    sql = (
        "select coalesce(sum(calls), 0), coalesce(sum(plans), 0),"
        " coalesce(sum(calls) filter (where query like 'INSERT INTO ingest_event%'), 0)"
        " from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())"
    )
    calls, plans, inserts = (float(x) for x in pg.psql(sql, DB_NAME).split("|"))
    events = max(events, 1)
    return {
        "statements_per_event": round(calls / events, 3),
        "plans_per_event": round(plans / events, 3),
        "events_per_insert": round(events / max(inserts, 1), 2),
    }


def _short(args) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "duration": 3})


class Sender(threading.Thread):
    """Sends signed events (or SDK batches) on one keep-alive connection and records every answer."""

    def __init__(self, *, port: int, app: dict, protocol: str, until: float, index: int) -> None:
        super().__init__(daemon=True)
        self.port, self.app, self.protocol, self.until, self.index = port, app, protocol, until, index
        self.answers: list[tuple[str, str, int]] = []  # (kind, marker, status)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        n = 0
        while time.monotonic() < self.until:
            n += 1
            sdk = self.protocol == "sdk" or (self.protocol == "both" and n % 2 == 0)
            marker = str(uuid.uuid4())
            if sdk:
                kind, url = "sdk", "/api/v1/ingest/events"
                body = json.dumps({"events": [sdk_event(event_id=marker)]}).encode()
                headers = {"Content-Type": "application/json", "x-api-key": self.app["sdk_key"]}
            else:
                kind, url = "v1", "/v1/events"
                event = {"event": "page_view", "user_hash": "a" * 64, "customer_org_id": "org", "path": f"/{marker}"}
                body = json.dumps(event).encode()
                signature = hmac.new(self.app["api_secret"].encode(), body, hashlib.sha256).hexdigest()
                headers = {"Content-Type": "application/json", "x-app-uuid": self.app["app_uuid"]}
                headers["x-signature"] = signature
            try:
                conn.request("POST", url, body, headers)
                response = conn.getresponse()
                answer = response.read()
                status = response.status
                if sdk and status == 200 and json.loads(answer)["accepted"] != 1:
                    status = 400  # rejected inside a 200: a bench bug, counted as "other"
            except OSError:
                status = 0  # no answer: the client does not know either; not counted against the server
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.answers.append((kind, marker, status))
            if status >= 500:
                time.sleep(0.01)  # a client backs off a little
        conn.close()


def scenario_crash(args) -> int:
    pg, env = cluster_ready({})
    workdir = Path(tempfile.mkdtemp(prefix="saastracker-faults-"))
    proc = None
    try:
        app = ingest_bench.application_new(env)
        proc = ingest_bench.server_start(env, workdir / "server.log")
        until = time.monotonic() + args.duration
        senders = [
            Sender(port=int(env["PORT"]), app=app, protocol=args.protocol, until=until, index=i)
            for i in range(args.senders)
        ]
        for sender in senders:
            sender.start()
        gap = args.duration / (args.crashes + 1)
        for _ in range(args.crashes):
            time.sleep(gap)
            pg.crash()
            pg.start()
        for sender in senders:
            sender.join(60)
        time.sleep(1)
        paths = set(pg.psql("select path from ingest_event", DB_NAME).split())
        sdk_ids = set(pg.psql("select event_id from ingest_sdkevent", DB_NAME).split())
    finally:
        stop(proc)
        pg.destroy()
    answers = [a for sender in senders for a in sender.answers]
    stored = {("v1", p.lstrip("/")) for p in paths} | {("sdk", i) for i in sdk_ids}
    result: dict = {"requests": len(answers), "crashes": args.crashes}
    for kind in ("v1", "sdk"):
        mine = [a for a in answers if a[0] == kind]
        if not mine:
            continue
        result[kind] = {
            "requests": len(mine),
            "2xx": sum(1 for a in mine if 200 <= a[2] < 300),
            "503": sum(1 for a in mine if a[2] == 503),
            "other": sum(1 for a in mine if a[2] not in (503, 0) and not 200 <= a[2] < 300),
            "no_answer": sum(1 for a in mine if a[2] == 0),
            "503_but_stored": sum(1 for a in mine if a[2] == 503 and (kind, a[1]) in stored),
            "2xx_but_missing": sum(1 for a in mine if 200 <= a[2] < 300 and (kind, a[1]) not in stored),
        }
        print(f"{kind}: {json.dumps(result[kind])}")
    print("FAULTS_JSON " + json.dumps(result))
    bad = sum(result[k]["503_but_stored"] + result[k]["2xx_but_missing"] for k in ("v1", "sdk") if k in result)
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--scenario", choices=["restart", "crash"], required=True)
    p.add_argument("--duration", type=int, default=None, help="seconds per phase (restart) or in all (crash)")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--n", type=int, default=100_000, help="distinct single events generated (restart)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--restart-mode",
        choices=["fast", "immediate", "none"],
        default="fast",
        help="pg_ctl stop mode (restart); `none` is the control run: the same four phases, no restart",
    )
    p.add_argument("--worker", action="store_true", help="also run scripts/worker (restart): its CPU is reported")
    p.add_argument("--crashes", type=int, default=5)
    p.add_argument("--senders", type=int, default=32)
    p.add_argument("--protocol", choices=["v1", "sdk", "both"], default="both")
    args = p.parse_args()
    if args.duration is None:
        args.duration = 10 if args.scenario == "restart" else 20
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another bench run is in progress; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return scenario_restart(args) if args.scenario == "restart" else scenario_crash(args)


if __name__ == "__main__":
    sys.exit(main())
