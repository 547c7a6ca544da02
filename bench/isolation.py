#!/usr/bin/env python3
"""Tenant A's ingest next to tenant B's heavy explorer queries (issue 18, item 3), side by side.

    bench/isolation.py generate [--events 2000000]
    bench/isolation.py run [--seconds 20] [--rounds 2] [--rate 200] [--attackers 64] [--warmup 5] [--root PATH ...]

`generate` (re)creates the database `isolation_bench`: tenant B ("Bench Analytics") with the shared
analytics data set (`bench/analytics_data.py`, N events over 30 days) and a member with a personal
API key; tenant A ("Victim") with an application and its API secret.

`run` starts `scripts/serve` (prod settings, WEB_CONCURRENCY=2, WEB_THREADS=16) of each `--root`
tree in turn (default: this one; give `--root /path/to/main` too for the code before the change),
and, after `--warmup` seconds of the victim's traffic (unmeasured: a fresh process's first requests
pay for lazy imports and new connections), alternates per round, for `--seconds` each:
- alone: tenant A sends signed `POST /v1/events` open-loop at `--rate` per second (each request
  timed from the moment it was due, so queueing in the client counts; 10 s client timeout, status 0;
  requests still unsent 10 s after the phase are counted as -1);
- attack: the same, while `--attackers` threads of tenant B each loop on a heavy explorer query
  (distinct sessions per user over 30 days: a scan of every raw row, seconds each), honouring
  `Retry-After` on 429/503 as a client that follows the API's contract does.
Prints p50/p99/max of the victim, its non-2xx count, the attackers' answers by status and the
1-minute load average at the end of each phase. The machine is shared: read figures side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, manage, prod_env, stop

DB_NAME = "isolation_bench"
META = Path(tempfile.gettempdir()) / "isolation-bench.json"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")


def generate(args: argparse.Namespace) -> None:
    from analytics_data import generate as data_generate

    data = data_generate(db=DB_NAME, events=args.events, days=30)
    env = prod_env(db_name=DB_NAME, port=0, redis_url=REDIS_URL)
    manage(env, "add_member", "--company", "Bench Analytics", "--username", "reader", "--role", "member")
    key = json.loads(manage(env, "create_personal_key", "--user", "reader", "--json").strip().splitlines()[-1])
    victim = json.loads(
        manage(env, "create_application", "--company", "Victim", "--name", "Web", "--json").strip().splitlines()[-1]
    )
    meta = {"attacker_app": data["app_uuid"], "attacker_key": key["key"], "victim": victim}
    META.write_text(json.dumps(meta))
    print(f"generated {args.events:,} events in {data['insert_seconds']} s; meta in {META}")


def serve(root: Path, port: int) -> subprocess.Popen:
    env = prod_env(db_name=DB_NAME, port=port, redis_url=REDIS_URL, WEB_THREADS="16", CELERY_BROKER_URL=REDIS_URL)
    proc = subprocess.Popen(
        [str(root / "scripts" / "serve")],
        cwd=root,
        env={**env, "PYTHON": str(ROOT / ".venv" / "bin" / "python")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/livez")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise SystemExit(f"{root}/scripts/serve did not come up")


def victim_run(port: int, victim: dict, *, rate: int, seconds: float) -> tuple[list[float], Counter]:
    """Open loop: request i is due at start + i/rate; its latency counts from then."""
    local = threading.local()
    secret = victim["api_secret"].encode()
    start = time.monotonic() + 0.2
    total = int(rate * seconds)

    give_up = start + seconds + 10  # a stalled server must not keep the phase going for minutes

    def one(i: int) -> tuple[float, int]:
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() > give_up:
            return give_up - due, -1  # never sent: counted as a failure, its latency at least this
        body = json.dumps(
            {"event": "page_view", "user_hash": "c" * 64, "customer_org_id": "victim", "path": f"/{uuid.uuid4().hex}"}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "x-app-uuid": victim["app_uuid"],
            "x-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
        }
        try:
            conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            local.conn = conn
            conn.request("POST", "/v1/events", body, headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            local.conn = None
            status = 0
        return time.monotonic() - due, status

    with ThreadPoolExecutor(48) as pool:
        results = list(pool.map(one, range(total)))
    return [r[0] for r in results], Counter(r[1] for r in results)


def attack(port: int, meta: dict, stop_at: threading.Event, statuses: Counter, lock: threading.Lock) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    query = json.dumps(
        {
            "source": "events",
            "measure": "sessions",
            "from": (now - timedelta(days=30)).isoformat(),
            "to": now.isoformat(),
            "group_by": ["user_hash", "path"],
            "limit": 10000,
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {meta['attacker_key']}"}
    path = f"/api/v1/analytics/apps/{meta['attacker_app']}/query"
    while not stop_at.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            conn.request("POST", path, query, headers)
            response = conn.getresponse()
            response.read()
            status, retry_after = response.status, response.getheader("Retry-After")
            conn.close()
        except (OSError, http.client.HTTPException):
            status, retry_after = 0, None
        with lock:
            statuses[status] += 1
        if retry_after:
            stop_at.wait(float(retry_after))


def attack_process(port: int, meta: dict, attackers: int, stop_at, results) -> None:
    """The attackers, in a process of their own: their client work must not slow the victim's client."""
    stop_local, statuses, lock = threading.Event(), Counter(), threading.Lock()
    threads = [
        threading.Thread(target=attack, args=(port, meta, stop_local, statuses, lock), daemon=True)
        for _ in range(attackers)
    ]
    for t in threads:
        t.start()
    stop_at.wait()
    stop_local.set()
    for t in threads:
        t.join(20)
    results.put(dict(statuses))


def phase(port: int, meta: dict, args: argparse.Namespace, *, attacked: bool) -> dict:
    ctx = multiprocessing.get_context("spawn")
    stop_at, results = ctx.Event(), ctx.Queue()
    attacker = None
    if attacked:
        attacker = ctx.Process(target=attack_process, args=(port, meta, args.attackers, stop_at, results))
        attacker.start()
        time.sleep(5)  # let the attack reach its steady state
    latencies, victim_statuses = victim_run(port, meta["victim"], rate=args.rate, seconds=args.seconds)
    load = os.getloadavg()[0]
    statuses: dict = {}
    if attacker is not None:
        stop_at.set()
        statuses = results.get(timeout=60)
        attacker.join(10)
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "sent": len(latencies),
        "non_2xx": sum(n for s, n in victim_statuses.items() if not 200 <= s < 300),  # 0: timeout, -1: unsent
        "attack_answers": dict(sorted(statuses.items())),
        "load_1m": round(load, 2),
    }


def run(args: argparse.Namespace) -> None:
    meta = json.loads(META.read_text())
    roots = [Path(r).resolve() for r in (args.root or [str(ROOT)])]
    for round_no in range(args.rounds):
        for root in roots:
            port = free_port()
            proc = serve(root, port)
            try:
                # A fresh process pays for its first requests (lazy imports, the pool's connections, each
                # connection's prepared statements): steady state is what the phases compare.
                victim_run(port, meta["victim"], rate=args.rate, seconds=args.warmup)
                for attacked in (False, True):
                    result = phase(port, meta, args, attacked=attacked)
                    label = "attack" if attacked else "alone "
                    print(f"round {round_no + 1} {root.name:<10} {label} {json.dumps(result)}", flush=True)
                    time.sleep(3)  # the attack's queries end (or time out) before the next phase
            finally:
                stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--events", type=int, default=2_000_000)
    r = sub.add_parser("run")
    r.add_argument("--seconds", type=float, default=20)
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--rate", type=int, default=200)
    r.add_argument("--warmup", type=float, default=5, help="seconds of victim traffic before the phases, unmeasured")
    r.add_argument("--attackers", type=int, default=64)
    r.add_argument("--root", action="append", help="a tree whose scripts/serve to run (repeatable)")
    args = parser.parse_args()
    {"generate": generate, "run": run}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
