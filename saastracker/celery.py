"""The Celery app: settings under the CELERY namespace, tasks autodiscovered, JSON only.

Routing lives here and only here. Each kind of work has its own queue, consumed by its own worker
processes (`scripts/worker`), so a slow or dead sink fills only its own queue: an export stuck on
BigQuery never delays a webhook, and neither delays the periodic sweeps that recover both.
"""

import os
from typing import Any

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")

app = Celery("saastracker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The queues, agreed across the project; `scripts/worker` starts one worker per role and each role
# consumes the queue of the same name.
QUEUE_EXPORT = "export"  # BigQuery: export (may block on the sink)
# BigQuery: recovery of batches whose worker died or whose call timed out. Its own worker, so it
# never waits behind the export tasks it recovers for (they may all be blocked on a slow sink).
QUEUE_RECOVERY = "recovery"
QUEUE_WEBHOOKS = "webhooks"  # fan-out and delivery (may block on customers' endpoints)
QUEUE_MAINTENANCE = "maintenance"  # short periodic sweeps; never waits on BigQuery or a customer
QUEUE_ANALYTICS = "analytics"  # folding events into rollups (analytics/)
QUEUE_SCANS = "scans"  # organization health scans, in bounded chunks: never delays a fold (issue 18 item 4)
QUEUES = (QUEUE_EXPORT, QUEUE_RECOVERY, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE, QUEUE_ANALYTICS, QUEUE_SCANS)

TASK_ROUTES = {
    # export: talks to BigQuery
    "ingest.export_pending": {"queue": QUEUE_EXPORT},
    "ingest.export_recover": {"queue": QUEUE_RECOVERY},
    # webhooks: talk to customers' endpoints
    "webhooks.fanout_pending": {"queue": QUEUE_WEBHOOKS},
    "webhooks.deliver_message": {"queue": QUEUE_WEBHOOKS},
    "webhooks.deliver_messages": {"queue": QUEUE_WEBHOOKS},
    # maintenance: database-only sweeps that must run on time whatever the sinks do
    "ingest.export_sweep": {"queue": QUEUE_MAINTENANCE},
    "ingest.retention": {"queue": QUEUE_MAINTENANCE},
    "ingest.partitions_maintain": {"queue": QUEUE_MAINTENANCE},
    "webhooks.sweep_due": {"queue": QUEUE_MAINTENANCE},
    "apps_registry.usage_refresh": {"queue": QUEUE_MAINTENANCE},
    # scans: organization health (one chunk of orgs per task), on their own worker
    "analytics.scan_app": {"queue": QUEUE_SCANS},
    "analytics.scan_daily": {"queue": QUEUE_SCANS},
    "analytics.funnel_events_prune": {"queue": QUEUE_SCANS},  # a long DELETE stays off the fold queue
    # analytics: every other task named `analytics.*` (the rollup fold and whatever joins it)
    "analytics.*": {"queue": QUEUE_ANALYTICS},
}
app.conf.task_routes = (TASK_ROUTES,)
# A worker started without `-Q` (tests, a one-off `celery worker`) consumes every queue; the
# role workers of `scripts/worker` pass `-Q <role>`. A task nobody routed runs on maintenance.
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.conf.task_default_queue = QUEUE_MAINTENANCE

# All periodic work in one place (run by `scripts/worker`, which starts beat). Each entry is a
# sweep that is idempotent, so a late or lost run only delays work; `expires` drops runs that
# waited longer than their period, since the next one supersedes them.
_beat_schedule: dict[str, dict[str, Any]] = {
    "usage refresh": {"task": "apps_registry.usage_refresh", "schedule": 60.0, "options": {"expires": 60}},
    "export sweep": {"task": "ingest.export_sweep", "schedule": 10.0, "options": {"expires": 10}},
    "retention": {"task": "ingest.retention", "schedule": 3600.0},
    # weekly partitions of the raw tables (ingest/partitions.py): made ahead, cut on Mondays
    "raw partitions": {"task": "ingest.partitions_maintain", "schedule": 3600.0, "options": {"expires": 3600}},
    "webhook fan-out sweep": {"task": "webhooks.fanout_pending", "schedule": 3.0, "options": {"expires": 3}},
    "webhook delivery sweep": {"task": "webhooks.sweep_due", "schedule": 5.0, "options": {"expires": 5}},
    # analytics (issue 10): fold new rows into rollups; rescan org health daily (scores age without events)
    "analytics fold": {"task": "analytics.fold_pending", "schedule": 2.0, "options": {"expires": 2}},
    "analytics daily scan": {"task": "analytics.scan_daily", "schedule": crontab(minute=5, hour=0)},
    "analytics funnel events prune": {
        "task": "analytics.funnel_events_prune",
        "schedule": crontab(minute=35, hour=0),
    },
}
# Worker liveness (issue 17, item 1d; saastracker/heartbeat.py): a no-op task on every queue, so an
# idle worker's pool proves it still runs tasks. `scripts/worker` restarts a worker that stops beating.
# Read from the environment here (not settings: this module is imported while settings load).
HEARTBEAT_TASK = "saastracker.heartbeat"
HEARTBEAT_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_SECONDS") or 10)
for _queue in QUEUES:
    _beat_schedule[f"heartbeat {_queue}"] = {
        "task": HEARTBEAT_TASK,
        "schedule": HEARTBEAT_SECONDS,
        "options": {"queue": _queue, "expires": HEARTBEAT_SECONDS},
    }
app.conf.beat_schedule = _beat_schedule


@app.task(name=HEARTBEAT_TASK, ignore_result=True, soft_time_limit=5, time_limit=10)
def heartbeat() -> None:
    """Nothing to do: running is the point (the task signals record the beat)."""


# Every log line of a task carries its id and name; runs and failures are counted by task name.


@signals.task_prerun.connect
def _task_context_start(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    from saastracker.heartbeat import task_started
    from saastracker.logs import context_reset

    context_reset(task_id=task_id or "", task_name=getattr(task, "name", "") or "")
    task_started(task)


@signals.task_postrun.connect
def _task_context_end(task: Any = None, state: str | None = None, **_: Any) -> None:
    from saastracker.heartbeat import task_ended
    from saastracker.logs import context_clear
    from saastracker.metrics import TASK_RUNS

    TASK_RUNS.labels(getattr(task, "name", "unknown"), state or "UNKNOWN").inc()
    context_clear()
    task_ended(task)


@signals.task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    from saastracker.metrics import TASK_FAILURES

    TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()
