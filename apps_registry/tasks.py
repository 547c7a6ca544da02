"""Periodic tenant work: re-check this month's overage flags (the analytics fold keeps the counts)."""

from celery import shared_task

from .services import usage_refresh


@shared_task(name="apps_registry.usage_refresh", soft_time_limit=50, time_limit=60, ignore_result=True)
def usage_refresh_task() -> int:
    """Idempotent: it only sets flags that are not set yet, so a lost or repeated run is harmless."""
    return len(usage_refresh())
