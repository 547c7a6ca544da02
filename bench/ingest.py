#!/usr/bin/env python3
"""Load test of both ingest endpoints against the production server, with the baseline in the same run.

    bench/ingest.py [--mode single|batch|both] [--duration 10] [--connections 16] [--no-baseline]
    bench/ingest.py --compare REV [--rounds 3] [--mode both]   # REV and this checkout, alternating

What it does, in order:
1. runs `../shared/bench/baseline` (bare Django on this machine) and reads its BASELINE_JSON;
2. creates/migrates the PostgreSQL database `bench_saastracker`, creates a fresh application
   (`manage.py create_application --json`), and writes signed requests with the shared `gen.py`;
3. starts `scripts/serve` (granian, prod settings, WEB_CONCURRENCY=2) and drives it with wrk and the
   shared `requests.lua` (-t4 -c16 -d10s, like the baseline);
4. counts the stored rows of that application and checks every 2xx is stored;
5. prints requests/s (events/s for batch), p50/p99, non-2xx, the ratio to the baseline, and one
   final line `BENCH_JSON {...}`. Exit status 1 when a request failed or an event is missing.

With `--compare REV`, the commit REV is checked out beside this one (a detached git worktree under
the temp folder, sharing this venv) and the two servers are measured in turn, REV first, for
`--rounds` rounds, each run with its own baseline, each on its own database (`<BENCH_DB>_cmp_<sha>`).
Single runs move by about +-0.1 of the baseline here, so read the medians of several rounds. Beside
requests/s, each run reports the CPU time the web processes spent per request (`web_cpu_ms`),
which other load on the machine barely moves.

Needs wrk, PostgreSQL on 127.0.0.1:5432 (trust, user postgres) and Redis on 127.0.0.1:6379.
Environment (all optional, bench only): BENCH_PG (server URL without database), BENCH_REDIS_URL,
BENCH_SECRET_KEY, BENCH_FIELD_ENCRYPTION_KEY, BENCH_LOCK, BENCH_DB (database name), SHARED_BENCH,
WEB_CONCURRENCY, WEB_THREADS.
The shared bench folder is `../shared/bench` next to the repository (as CI lays it out), else
/work/shared/bench, or $SHARED_BENCH.
"""

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from common import PG, ROOT, database_prepare, free_port, manage, prod_env, psql, python, stop, tree_cpu

DB_NAME = os.environ.get("BENCH_DB", "bench_saastracker")  # a bench-only name: BENCH_DB=<branch>_bench
EVENTS_PER_BATCH = 20
TABLES = {"single": "ingest_event", "batch": "ingest_sdkevent"}


def shared_bench() -> Path:
    for candidate in (os.environ.get("SHARED_BENCH"), ROOT.parent / "shared" / "bench", "/work/shared/bench"):
        if candidate and (Path(candidate) / "gen.py").exists():
            return Path(candidate)
    sys.exit("shared bench folder not found (../shared/bench, /work/shared/bench or $SHARED_BENCH)")


def server_env(port: int, db_name: str = DB_NAME) -> dict:
    # Threads per worker: a durable commit waits on the WAL flush, so requests must overlap for
    # PostgreSQL to group their commits. 16 per worker means no wrk connection ever queues behind
    # another however granian splits them (the baseline's granian defaults to hundreds).
    return prod_env(
        db_name=db_name,
        port=port,
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        WEB_THREADS=os.environ.get("WEB_THREADS", "16"),
    )


def tables_empty(db_name: str) -> None:
    """Start from empty event tables, as the baseline starts from a fresh table: same index sizes."""
    psql(f"{PG}/{db_name}", "truncate ingest_event, ingest_sdkevent, ingest_idempotencykey")
    psql(f"{PG}/{db_name}", "checkpoint")


_CREATE_SNIPPET = """
import json, sys, django
django.setup()
from apps_registry.services import application_create, company_get_or_create
company = company_get_or_create(name=sys.argv[1], tier="enterprise")
new = application_create(company=company, name="bench")
print(json.dumps({"app_id": new.application.pk, "app_uuid": str(new.application.uuid),
                  "api_secret": new.api_secret, "sdk_key": new.sdk_key}))
"""


def application_new(env: dict, root: Path = ROOT) -> dict:
    company = f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    if (root / "apps_registry" / "management" / "commands" / "create_application.py").exists():
        out = manage(
            env,
            "create_application",
            "--company",
            company,
            "--name",
            "bench",
            "--plan",
            "enterprise",
            "--json",
            root=root,
        )
    else:
        out = subprocess.run(
            [python(), "-c", _CREATE_SNIPPET, company], cwd=root, env=env, check=True, capture_output=True, text=True
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def requests_generate(shared: Path, outdir: Path, app: dict, *, n: int, batches: int) -> None:
    subprocess.run(
        [
            python(),
            str(shared / "gen.py"),
            str(outdir),
            "--secret",
            app["api_secret"],
            "--app-uuid",
            app["app_uuid"],
            "--sdk-key",
            app["sdk_key"],
            "--n",
            str(n),
            "--batches",
            str(batches),
        ],
        check=True,
    )


def server_start(env: dict, log: Path, root: Path = ROOT) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(root / "scripts" / "serve")],
        cwd=root,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the whole process group (granian workers) can be stopped
    )
    url = f"http://127.0.0.1:{env['PORT']}/v1/events"
    for _ in range(150):
        try:
            urllib.request.urlopen(url, timeout=1)  # GET answers 405: any HTTP answer means ready
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"server exited early, see {log}")
            time.sleep(0.2)
    else:
        sys.exit(f"server did not come up, see {log}")
    return proc


def wrk_run(shared: Path, reqdir: Path, mode: str, port: int, args) -> dict:
    env = dict(os.environ, MODE=mode, REQDIR=str(reqdir), THREADS=str(args.threads))
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "-s",
            str(shared / "requests.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    return json.loads(line.removeprefix("WRK_JSON "))


def baseline_run(shared: Path, args) -> dict:
    out = subprocess.run(
        [str(shared / "baseline"), "--duration", str(args.duration), "--connections", str(args.connections)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BASELINE_JSON "))
    return json.loads(line.removeprefix("BASELINE_JSON "))


def stored_count(mode: str, app_id: int, db_name: str) -> int:
    sql = f"select count(*) from {TABLES[mode]} where application_id = {int(app_id)}"  # noqa: S608 (constants, an int)
    return int(psql(f"{PG}/{db_name}", sql))


def bench_run(args, shared: Path, modes: list[str], *, root: Path = ROOT, db_name: str = DB_NAME) -> dict:
    """One measured run: the baseline, then the server of `root` on `db_name`, each mode in turn."""
    baseline = None if args.no_baseline else baseline_run(shared, args)
    if baseline:
        print(f"baseline: {json.dumps(baseline)}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="saastracker-bench-"))
    port = free_port()
    env = server_env(port, db_name)
    database_prepare(env, db_name, root)
    if not args.keep_rows:
        tables_empty(db_name)
    app = application_new(env, root)
    requests_generate(shared, workdir / "requests", app, n=args.n, batches=args.batches)

    results: dict = {}
    proc = server_start(env, workdir / "server.log", root)
    try:
        for mode in modes:
            before = stored_count(mode, app["app_id"], db_name)
            cpu_before, pg_before = tree_cpu(proc.pid), backends_cpu(db_name)
            run = wrk_run(shared, workdir / "requests", mode, port, args)
            time.sleep(0.5)  # let in-flight requests finish before counting
            web_cpu = tree_cpu(proc.pid) - cpu_before
            pg_cpu = sum(now - pg_before.get(pid, 0.0) for pid, now in backends_cpu(db_name).items())
            stored = stored_count(mode, app["app_id"], db_name) - before
            ok = run["requests"] - run["non2xx"]
            expected = ok * (EVENTS_PER_BATCH if mode == "batch" else 1)
            generated = args.n if mode == "single" else args.batches
            result = {
                "requests": run["requests"],
                "rps": run["rps"],
                "p50_ms": run["p50_ms"],
                "p99_ms": run["p99_ms"],
                "non2xx": run["non2xx"],
                "socket_errors": run["socket_errors"],
                "web_cpu_ms": round(web_cpu * 1000 / max(run["requests"], 1), 3),
                "pg_cpu_ms": round(pg_cpu * 1000 / max(run["requests"], 1), 3),
                "expected_rows": expected,
                "stored_rows": stored,
                "missing": max(0, expected - stored),
                "extra": max(0, stored - expected),
                "replayed_requests": run["requests"] > generated,  # wrk wrapped around: repeats are not distinct
            }
            if mode == "batch":
                result["events_per_s"] = round(run["rps"] * EVENTS_PER_BATCH, 1)
            if baseline:
                if mode == "single":
                    result["ratio"] = round(run["rps"] / baseline["single_rps"], 3)
                else:
                    result["ratio"] = round(result["events_per_s"] / baseline["batch_events_per_s"], 3)
            results[mode] = result
    finally:
        stop(proc)

    for mode, r in results.items():
        rate = f"{r['events_per_s']} events/s ({r['rps']} req/s)" if mode == "batch" else f"{r['rps']} req/s"
        ratio = f"  ratio to baseline {r['ratio']}" if "ratio" in r else ""
        print(
            f"{mode}: {rate}  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  non-2xx {r['non2xx']}  "
            f"socket errors {r['socket_errors']}  CPU ms/request: web {r['web_cpu_ms']}, "
            f"PostgreSQL {r['pg_cpu_ms']}{ratio}"
        )
        print(f"{mode}: stored {r['stored_rows']} of {r['expected_rows']} expected rows, missing {r['missing']}")
    if args.keep:
        print(f"requests and server log kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"baseline": baseline, **results}


def checkout_of(rev: str) -> tuple[Path, str]:
    """A detached worktree of `rev` beside this checkout (made once, reused), sharing this venv."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short=10", f"{rev}^{{commit}}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"saastracker-rev-{sha}"
    if not (path / "manage.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True)
    venv = path / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")
    return path, sha


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else round((ordered[mid - 1] + ordered[mid]) / 2, 3)


def compare(args, shared: Path, modes: list[str]) -> dict:
    """REV and this checkout in turn (REV first), `args.rounds` times; medians of each figure."""
    other_root, sha = checkout_of(args.compare)
    sides = {sha: (other_root, f"{DB_NAME}_cmp_{sha}"), "this": (ROOT, DB_NAME)}
    runs: dict[str, list[dict]] = {label: [] for label in sides}
    for round_no in range(1, args.rounds + 1):
        for label, (root, db_name) in sides.items():
            load = os.getloadavg()[0]
            print(f"--- round {round_no}/{args.rounds}: {label} (load average {load:.2f})", flush=True)
            result = bench_run(args, shared, modes, root=root, db_name=db_name)
            result["load"] = round(load, 2)
            runs[label].append(result)
    summary: dict = {"runs": runs, "median": {}}
    print("\nside by side (ratio to the baseline of the same run; medians of CPU ms per request):")
    for mode in modes:
        for label in sides:
            ratios = [r[mode].get("ratio", 0.0) for r in runs[label]]
            cpu = [r[mode]["web_cpu_ms"] for r in runs[label]]
            pg = [r[mode]["pg_cpu_ms"] for r in runs[label]]
            summary["median"].setdefault(mode, {})[label] = {
                "ratio": _median(ratios),
                "web_cpu_ms": _median(cpu),
                "pg_cpu_ms": _median(pg),
            }
            print(
                f"{mode:6} {label:10} ratios {' / '.join(f'{x:.2f}' for x in ratios)}  median {_median(ratios):.3f}"
                f"   CPU ms/request web {_median(cpu):.3f} PostgreSQL {_median(pg):.3f}"
            )
    return summary


def backends_cpu(db_name: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to `db_name` (the server's connections)."""
    pids = psql(f"{PG}/{db_name}", f"select pid from pg_stat_activity where datname = '{db_name}'")  # noqa: S608
    cpu: dict[int, float] = {}
    for pid in (int(x) for x in pids.split()):
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        cpu[pid] = times.user + times.system
    return cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--mode", choices=["single", "batch", "both"], default="single")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline (no ratio is printed)")
    p.add_argument("--n", type=int, default=200_000, help="distinct single events generated")
    p.add_argument("--batches", type=int, default=30_000, help="distinct batches generated")
    p.add_argument("--keep", action="store_true", help="keep the generated requests and the server log")
    p.add_argument("--keep-rows", action="store_true", help="do not empty the event tables of bench_saastracker first")
    p.add_argument("--compare", metavar="REV", help="measure commit REV and this checkout in turn")
    p.add_argument("--rounds", type=int, default=3, help="with --compare: alternating rounds (REV, this) to run")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    shared = shared_bench()
    modes = ["single", "batch"] if args.mode == "both" else [args.mode]
    # One run at a time on this machine: concurrent runs would share the CPUs and truncate each other's tables.
    lock_path = os.environ.get("BENCH_LOCK") or Path(tempfile.gettempdir()) / "saastracker-bench-ingest.lock"
    lock = open(lock_path, "w")  # noqa: SIM115 (held for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another bench run is in progress; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)

    if args.compare:
        summary = compare(args, shared, modes)
        print("BENCH_JSON " + json.dumps(summary))
        results = [r[mode] for runs in summary["runs"].values() for r in runs for mode in modes]
    else:
        outcome = bench_run(args, shared, modes)
        print("BENCH_JSON " + json.dumps(outcome))
        results = [outcome[mode] for mode in modes]
    failed = any(r["non2xx"] or r["socket_errors"] or r["missing"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
