"""The Celery app: settings under the CELERY namespace, tasks autodiscovered, JSON only."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")

app = Celery("saastracker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
