"""Retention of raw rows in PostgreSQL: BigQuery keeps the history, PostgreSQL only the recent past.

A row is deleted when it is settled (EXPORTED, or SKIPPED for lack of consent: its state as the
export ledger says, see ingest/services/export.py) and was received
more than its company's effective `retention_days` ago. PENDING, SENDING and DEAD rows are kept
whatever their age: they still owe BigQuery a row; so are events not yet folded into the
analytics rollups, which outlive the raw rows (settings.RETENTION_KEEP_FILTERS: callables that name
what must stay, so ingest never imports the app that owns the fold). Deletes run in bounded batches (short
transactions, no long locks, no bloat spike) until done or the time budget is used; the next run
continues.

Row deletes rather than dropping day partitions: retention differs per company while a day
partition would hold every company's rows, and unsettled rows must survive; the tables are also
plain (unpartitioned) Django tables. See the report in the issue for the trade-off.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet, Subquery
from django.utils import timezone
from django.utils.module_loading import import_string

from apps_registry.models import Company
from ingest.models import Event, ExportState, IdempotencyKey, IdentifyLink, SdkEvent
from ingest.services.export import export_state_q

BATCH_SIZE = 5000


def _delete_in_batches(queryset: QuerySet, *, batch_size: int, deadline: float) -> int:
    deleted = 0
    model = queryset.model
    while time.monotonic() < deadline:
        ids = queryset.order_by().values("pk")[:batch_size]
        count, _ = model.objects.filter(pk__in=Subquery(ids)).delete()
        deleted += count
        if count < batch_size:
            break
    return deleted


def retention_apply(
    *, now: datetime | None = None, batch_size: int = BATCH_SIZE, budget_seconds: float = 1200.0
) -> dict[str, int]:
    """Delete settled rows past retention, and idempotency keys past their TTL. Returns counts."""
    now = now or timezone.now()
    deadline = time.monotonic() + budget_seconds
    counts = {"events": 0, "sdk_events": 0, "identify_links": 0, "idempotency_keys": 0}
    for company in Company.objects.select_related("plan").order_by("id"):
        cutoff = now - timedelta(days=company.retention_days)
        for name, model in (("events", Event), ("sdk_events", SdkEvent), ("identify_links", IdentifyLink)):
            settled = export_state_q(model=model, state=ExportState.EXPORTED) | export_state_q(
                model=model, state=ExportState.SKIPPED
            )
            old = model.objects.filter(settled, company_id=company.id, received_at__lt=cutoff)
            if name != "identify_links":  # never delete an event the analytics fold has not counted yet
                for keep in settings.RETENTION_KEEP_FILTERS:
                    old = old.filter(**import_string(keep)(model))
            counts[name] += _delete_in_batches(old, batch_size=batch_size, deadline=deadline)
    expired = IdempotencyKey.objects.filter(
        created_at__lt=now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    )
    counts["idempotency_keys"] = _delete_in_batches(expired, batch_size=batch_size, deadline=deadline)
    return counts
