"""The Celery app: settings under the CELERY namespace, tasks autodiscovered, JSON only."""

import os

from celery import Celery
from celery.schedules import crontab

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
    # analytics (issue 10): fold new rows into rollups; rescan org health daily (scores age without events)
    "analytics fold": {"task": "analytics.fold_pending", "schedule": 2.0, "options": {"expires": 2}},
    "analytics daily scan": {"task": "analytics.scan_daily", "schedule": crontab(minute=5, hour=0)},
}
