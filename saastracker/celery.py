"""The Celery app: settings under the CELERY namespace, tasks autodiscovered, JSON only."""

import os

from celery import Celery

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
