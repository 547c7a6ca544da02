"""Periodic tenant work: recount this month's usage and flag overage (never on the request path)."""

from celery import shared_task

from saastracker.celery import app

from .services import usage_refresh

USAGE_REFRESH_SECONDS = 60.0


@shared_task(name="apps_registry.usage_refresh", soft_time_limit=50, time_limit=60, ignore_result=True)
def usage_refresh_task() -> int:
    """Idempotent: it recounts from the stored events, so a lost or repeated run is harmless."""
    return len(usage_refresh())


@app.on_after_finalize.connect
def _schedule(sender, **kwargs) -> None:
    # expires: a run that waited longer than its period is superseded by the next one.
    sender.add_periodic_task(
        USAGE_REFRESH_SECONDS,
        usage_refresh_task.s(),
        name="apps_registry.usage_refresh every 60s",
        expires=USAGE_REFRESH_SECONDS,
    )
