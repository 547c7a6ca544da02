"""An idle `scripts/worker` (every role, beat included) is quiet: one summary line per interval.

The summary interval is shortened (LOG_SWEEP_SUMMARY_SECONDS=4) so that a 20-second window holds
several of them; the sweeps keep their production periods (2 to 10 s).
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.factories import ApplicationFactory, EventFactory

REPO = Path(__file__).resolve().parents[1]
SUMMARY_SECONDS = 4
WINDOW_SECONDS = 20
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def _lines_after(log: Path, offset: int) -> list[str]:
    return [line for line in log.read_text(errors="replace")[offset:].splitlines() if LINE.match(line)]


def _wait_for(log: Path, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(log.read_text(errors="replace")):
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out; the worker's log:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_idle_worker_writes_one_summary_line_per_interval_and_still_logs_work(tmp_path):
    # Given every worker role and beat running on an empty database
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "LOG_"))},
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TEST_CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "BIGQUERY_PROJECT": "",
        "CELERY_LOG_LEVEL": "info",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "METRICS_DIR": str(tmp_path / "metrics"),
        "LOG_FORMAT": "text",
        "LOG_SWEEP_SUMMARY_SECONDS": str(SUMMARY_SECONDS),
        **{f"CELERY_{role}_CONCURRENCY": "1" for role in ("EXPORT", "WEBHOOKS", "MAINTENANCE", "ANALYTICS")},
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(  # noqa: S603 (our own script)
        [str(REPO / "scripts" / "worker")],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(log, lambda text: text.count(" ready.") >= 4, timeout=120)
        _wait_for(log, lambda text: "export status:" in text, timeout=30)  # said once, then only on change
        start = len(log.read_text(errors="replace"))

        # When it stays idle for the window
        time.sleep(WINDOW_SECONDS)
        idle = _lines_after(log, start)

        # Then it wrote only the summary lines: no per-run beat, received or succeeded line
        summaries = [line for line in idle if "periodic sweeps: beat sent" in line]
        assert 2 <= len(summaries) <= WINDOW_SECONDS // SUMMARY_SECONDS + 1, idle
        assert [line for line in idle if line not in summaries] == []
        assert re.search(r"analytics\.fold_pending \d+", summaries[-1])

        # And when there is work, the sweeps that find it say so, and the export status changes
        EventFactory(application=ApplicationFactory())
        offset = len(log.read_text(errors="replace"))
        _wait_for(log, lambda text: "analytics.fold_pending" in text[offset:] and "succeeded" in text[offset:], 30)
        _wait_for(log, lambda text: "export status: off (no BIGQUERY_PROJECT) lag=" in text[offset:], 30)
        busy = "\n".join(_lines_after(log, offset))
        assert re.search(r"Task analytics\.fold_pending\[[^\]]+\] succeeded .*'claimed': 1", busy), busy
        assert "pending=1" in busy
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
