"""Celery adapters for webhooks: fan-out, one delivery, and the sweepers. Thin; see services.py.

Every task is idempotent (the database rows say what is owed), so acks_late and repeats are safe.
"""

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from . import services

# A fan-out usually finds one or two new rows: attempting them right away saves a task per event.
FANOUT_DELIVER_INLINE_MAX = services.DELIVER_CHUNK
_DELIVERY_SOFT_LIMIT = settings.WEBHOOK_TIMEOUT_SECONDS + 15
_DB_RETRY = {"autoretry_for": (DatabaseError,), "max_retries": 3, "retry_backoff": 2, "retry_jitter": True}


@shared_task(
    name="webhooks.fanout_pending", acks_late=True, soft_time_limit=50, time_limit=60, ignore_result=True, **_DB_RETRY
)
def fanout_pending() -> int:
    """Create the messages owed for stored rows still flagged webhook_pending."""
    return services.messages_fanout(deliver_inline_max=FANOUT_DELIVER_INLINE_MAX)


@shared_task(
    name=services.DELIVER_TASK,
    acks_late=True,
    soft_time_limit=_DELIVERY_SOFT_LIMIT,
    time_limit=_DELIVERY_SOFT_LIMIT + 10,
    ignore_result=True,
    **_DB_RETRY,
)
def deliver_message(message_id: str) -> str:
    """One attempt; a no-op unless the message is due and unleased. Retries follow the message's own schedule."""
    return services.message_deliver(message_id=message_id)


@shared_task(
    name=services.DELIVER_BATCH_TASK,
    acks_late=True,
    soft_time_limit=services.DELIVER_BATCH_BUDGET_SECONDS + _DELIVERY_SOFT_LIMIT,
    time_limit=services.DELIVER_BATCH_BUDGET_SECONDS + _DELIVERY_SOFT_LIMIT + 10,
    ignore_result=True,
    **_DB_RETRY,
)
def deliver_messages(message_ids: list[str]) -> dict:
    """Several attempts in turn, within a time budget; the rest goes back to the broker."""
    return services.messages_deliver(message_ids=message_ids)


@shared_task(name="webhooks.sweep_due", acks_late=True, soft_time_limit=50, time_limit=60, ignore_result=True)
def sweep_due() -> int:
    """Re-enqueue deliveries whose broker message was lost or whose worker died."""
    return services.messages_sweep()
