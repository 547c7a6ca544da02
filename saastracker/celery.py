"""The Celery app: settings under the CELERY namespace, tasks autodiscovered, JSON only."""

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")

app = Celery("saastracker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# All periodic work in one place (run by `scripts/worker`, which starts beat). Each entry is a
# sweep that is idempotent, so a late or lost run only delays work; `expires` drops runs that
# waited longer than their period, since the next one supersedes them.
app.conf.beat_schedule = {
    "usage refresh": {"task": "apps_registry.usage_refresh", "schedule": 60.0, "options": {"expires": 60}},
    "export sweep": {"task": "ingest.export_sweep", "schedule": 30.0},
    "retention": {"task": "ingest.retention", "schedule": 3600.0},
    "webhook fan-out sweep": {"task": "webhooks.fanout_pending", "schedule": 3.0, "options": {"expires": 3}},
    "webhook delivery sweep": {"task": "webhooks.sweep_due", "schedule": 5.0, "options": {"expires": 5}},
}


# Every log line of a task carries its id and name; runs and failures are counted by task name.


@signals.task_prerun.connect
def _task_context_start(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    from saastracker.logs import context_reset

    context_reset(task_id=task_id or "", task_name=getattr(task, "name", "") or "")


@signals.task_postrun.connect
def _task_context_end(task: Any = None, state: str | None = None, **_: Any) -> None:
    from saastracker.logs import context_clear
    from saastracker.metrics import TASK_RUNS

    TASK_RUNS.labels(getattr(task, "name", "unknown"), state or "UNKNOWN").inc()
    context_clear()


@signals.task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    from saastracker.metrics import TASK_FAILURES

    TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()
