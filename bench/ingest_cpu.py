#!/usr/bin/env python3
"""CPU per ingest request inside the web process, without a server or a client: where the time goes.

    bench/ingest_cpu.py [--mode single|batch] [--requests 5000] [--root TREE] [--profile 30]

The load test (`bench/ingest.py`) says how fast the whole service is; on two shared cores its
figures move by +-0.1 of the baseline. This one replays the same signed requests through the
production WSGI application (`saastracker.wsgi.application`, prod settings, the bench database)
one after another in one thread, and reads the process's CPU clock: a figure that other load on
the machine barely moves, so two commits (`--root` a checkout of another commit) or two settings
can be held against each other in a minute. Each request still writes and commits its row in
PostgreSQL: the figure includes the client side of that round trip, not the server's. With
`--profile N` it prints cProfile's top N functions by own time.

Environment as for bench/ingest.py (BENCH_PG, BENCH_REDIS_URL, BENCH_DB, SHARED_BENCH); any other
variable (ACCESS_LOG=0, METRICS_ENABLED=0, ...) reaches the application's settings.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from common import ROOT, database_prepare, free_port, prod_env, python

from ingest import DB_NAME, application_new, requests_generate, shared_bench

# Runs inside the tree under test (its own modules, its own settings), so it only uses what every
# commit of the project has: the WSGI application and the bench's request files.
_REPLAY = r"""
import cProfile, io, json, pstats, sys, time
mode, reqdir, count, top, app_uuid, sdk_key = sys.argv[1:7]
count, top = int(count), int(top)
from saastracker.wsgi import application
path = "/v1/events" if mode == "single" else "/api/v1/ingest/events"
lines = open(f"{reqdir}/{mode}.txt", encoding="utf-8").read().splitlines()[: count * 2]
def environ(line):
    if mode == "single":
        signature, body = line.split("\t", 1)
        headers = {"HTTP_X_APP_UUID": app_uuid, "HTTP_X_SIGNATURE": signature}
    else:
        body, headers = line, {"HTTP_X_API_KEY": sdk_key}
    data = body.encode()
    return dict(
        REQUEST_METHOD="POST", PATH_INFO=path, SCRIPT_NAME="", QUERY_STRING="", SERVER_NAME="127.0.0.1",
        SERVER_PORT="8000", REMOTE_ADDR="127.0.0.1", CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(len(data)), HTTP_HOST="127.0.0.1", **headers,
        **{"wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr},
    )
statuses = {}
def start_response(status, headers, exc_info=None):
    statuses[status[:3]] = statuses.get(status[:3], 0) + 1
def run(chunk):
    for line in chunk:
        body = application(environ(line), start_response)
        b"".join(body)
        getattr(body, "close", lambda: None)()
run(lines[:count])  # warm-up: caches, prepared statements, imported modules
statuses.clear()
profile = cProfile.Profile(time.process_time) if top else None  # CPU, not wall
cpu, wall = time.process_time(), time.perf_counter()
if profile: profile.enable()
run(lines[count : count * 2])
if profile: profile.disable()
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
n = len(lines[count : count * 2])
figures = {"requests": n, "cpu_us": round(cpu / n * 1e6, 1), "wall_us": round(wall / n * 1e6, 1)}
print("CPU_JSON " + json.dumps({**figures, "statuses": statuses}))
if profile:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    root = args.root.resolve()
    db_name = DB_NAME if root == ROOT else f"{DB_NAME}_cpu_{zlib.crc32(str(root).encode()) % 10**6}"
    env = prod_env(
        db_name=db_name,
        port=free_port(),
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        METRICS_DIR=tempfile.mkdtemp(prefix="ingest-cpu-metrics-"),
        DB_POOL_MAX_SIZE=os.environ.get("DB_POOL_MAX_SIZE", "19"),  # as scripts/serve sets it (WEB_THREADS + 3)
    )
    env["PROMETHEUS_MULTIPROC_DIR"] = env["METRICS_DIR"]  # as scripts/serve sets it for the web processes
    database_prepare(env, db_name, root=root)
    app = application_new(env, root=root)
    with tempfile.TemporaryDirectory() as reqdir:
        n = args.requests * 2
        requests_generate(shared_bench(), Path(reqdir), app, n=n, batches=n)
        out = subprocess.run(
            [
                python(),
                "-c",
                _REPLAY,
                args.mode,
                reqdir,
                str(args.requests),
                str(args.profile),
                app["app_uuid"],
                app["sdk_key"],
            ],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    line = next(line for line in out.splitlines() if line.startswith("CPU_JSON "))
    figures = json.loads(line.removeprefix("CPU_JSON "))
    cpu, wall, statuses = figures["cpu_us"], figures["wall_us"], figures["statuses"]
    print(f"{args.mode} ({root}): {cpu} us CPU/request, {wall} us wall, statuses {statuses}")
    if args.profile:
        print(out[out.index(line) + len(line) :])
    print(line)
    sys.exit(0 if set(figures["statuses"]) <= {"200", "202"} else 1)


if __name__ == "__main__":
    main()
