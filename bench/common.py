"""What every benchmark here needs: the venv's python, free ports, psql, manage.py, the
production settings pointed at a bench database, a process tree's CPU, and stopping a process group."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(dsn: str, sql: str) -> str:
    return subprocess.run(["psql", dsn, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


def manage(env: dict, *args: str, root: Path = ROOT) -> str:
    """`manage.py` of `root` (this checkout, or another commit's checkout in a side-by-side run)."""
    return subprocess.run(
        [python(), "manage.py", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout


def database_prepare(env: dict, db_name: str, root: Path = ROOT) -> None:
    """Create the bench database if missing and migrate it. `db_name` is a script constant."""
    if psql(f"{PG}/postgres", f"select 1 from pg_database where datname = '{db_name}'") != "1":  # noqa: S608
        psql(f"{PG}/postgres", f"create database {db_name}")
    manage(env, "migrate", "--noinput", root=root)


def prod_env(*, db_name: str, port: int, redis_url: str, **extra: str) -> dict:
    """The production settings module with bench-only secrets, no TLS redirect and no rate limit."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="saastracker.settings.prod",
        DATABASE_URL=f"{PG}/{db_name}",
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY", "bench-only-secret-key-not-for-production"),
        # A fixed key so secrets stored by earlier runs stay readable; these databases are for benches only.
        FIELD_ENCRYPTION_KEY=os.environ.get(
            "BENCH_FIELD_ENCRYPTION_KEY", "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0hIT0="
        ),
        SECURE_SSL_REDIRECT="0",
        METRICS_LOOPBACK_ALLOWED="1",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        ALLOWED_HOSTS="*",
        RATE_LIMIT_PER_SECOND="1000000",
        RATE_LIMIT_BURST="1000000",
        REDIS_URL=redis_url,
        LOG_LEVEL="WARNING",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", "2"),
        **extra,
    )
    return env


def stop(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def worker_start(env: dict, log: Path, celery_app=None, *, timeout: float = 60) -> subprocess.Popen:
    """`scripts/worker` in its own process group, returned once it is up.

    Up means: it answers a ping through `celery_app` (a Celery app configured for the same broker),
    or, without one, every role (export, webhooks, maintenance, analytics) has logged `ready`.
    """
    import time

    worker = subprocess.Popen(
        [str(ROOT / "scripts" / "worker")],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def up() -> bool:
        if celery_app is not None:
            return bool(celery_app.control.ping(timeout=0.5))
        time.sleep(0.5)
        return log.read_text(errors="replace").count(" ready.") >= 4

    deadline = time.monotonic() + timeout
    while not up():
        if time.monotonic() > deadline or worker.poll() is not None:
            stop(worker)
            raise SystemExit(f"celery worker did not start; see {log}")
    return worker


def sdk_event(
    *, event_name: str = "session_start", event_id: str | None = None, properties: dict | None = None
) -> dict:
    """One consented SDK event as a mobile SDK would send it (fresh anon id and session)."""
    import time
    import uuid

    return {
        "schema_version": 1,
        "event_id": event_id or str(uuid.uuid4()),
        "event_name": event_name,
        "ts_ms": int(time.time() * 1000),
        "user": {"anon_id": str(uuid.uuid4())},
        "device": {
            "platform": "ios",
            "os": "17.0",
            "app_version": "1.0.0",
            "sdk_version": "1.0.0",
            "bundle_version": 3,
            "locale": "en_US",
            "country": "US",
        },
        "context": {"session_id": str(uuid.uuid4())},
        "properties": properties or {},
        "privacy": {"consent": {"analytics": True}},
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants: a server's or a cluster's whole tree."""
    import psutil  # bench-only dependency, imported where it is used

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
