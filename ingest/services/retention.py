"""Retention of raw rows in PostgreSQL: BigQuery keeps the history, PostgreSQL only the recent past.

A row goes when it is settled (EXPORTED, or SKIPPED for lack of consent: its state as the export
ledger says, see ingest/services/export.py), its webhooks are fanned out, the analytics fold has
counted it (settings.RETENTION_KEEP_FILTERS: callables that name what must stay, so ingest never
imports the app that owns the fold), and it was received more than its company's effective
`retention_days` ago.

Whole weeks first: the raw tables are partitioned by week (ingest/partitions.py), and a closed
partition is dropped in one step once the longest retention among the companies with rows in it
has passed since it closed and nothing in it is still owed. Then rows are deleted one by one where
a partition cannot go yet: those of companies that keep events for less than the longest in their
partition, and those of the partition still taking rows. Rows whose partition will be dropped are
left to the drop, so they stay at most a week (a partition's span) past their retention.
Deletes run in bounded batches (short transactions, no long locks, no bloat spike) until done or
the time budget is used; the next run continues.

The dedup keys go with what they guard: an identify link's key with its row; an SDK event id after
`SDK_DEDUP_DAYS`, or the company's retention plus a week when that is longer.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from apps_registry.models import Application, Company
from ingest.models import Event, ExportState, IdempotencyKey, IdentifyKey, IdentifyLink, SdkEvent, SdkEventKey
from ingest.partitions import PERIOD, Partition, companies_in, partition_drop, partitions_list
from ingest.services.export import export_owed_in, export_state_q

BATCH_SIZE = 5000
RAW = (("events", Event), ("sdk_events", SdkEvent), ("identify_links", IdentifyLink))
_SDK_KEYS_EXPIRED = f"""
DELETE FROM {SdkEventKey._meta.db_table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {SdkEventKey._meta.db_table} WHERE application_id = ANY(%s) AND received_at < %s LIMIT %s))
"""  # noqa: S608 - only the model's table name is interpolated


def _keep_filters(model: type[Model]) -> list[dict]:
    """What the analytics fold still needs (identify links are not folded)."""
    if model is IdentifyLink:
        return []
    return [import_string(keep)(model) for keep in settings.RETENTION_KEEP_FILTERS]


def _delete_in_batches(queryset: QuerySet, *, batch_size: int, deadline: float) -> int:
    deleted = 0
    model = queryset.model
    while time.monotonic() < deadline:
        # The ids travel as literals: the DELETE then touches only the weekly partitions that hold
        # them (a subquery would be joined against every partition).
        ids = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if model is IdentifyLink:
            count = _links_delete(ids)
        else:
            count, _ = model._default_manager.filter(pk__in=ids).delete()
        deleted += count
        if count < batch_size:
            break
    return deleted


def _links_delete(ids: list[int]) -> int:
    """Links and their keys together, so a later repeat of the link stores it again."""
    with transaction.atomic():
        IdentifyKey.objects.filter(row_id__in=ids).delete()
        count, _ = IdentifyLink.objects.filter(pk__in=ids).delete()
    return count


def _still_needed(model: type[Model], partition: Partition) -> bool:
    """Whether a row of the partition is owed to BigQuery, to webhooks or to the fold."""
    rows = partition.ids()
    return (
        export_owed_in(model=model, rows=rows)
        or model._default_manager.filter(rows, webhook_pending=True).exists()
        or any(model._default_manager.filter(rows).exclude(**keep).exists() for keep in _keep_filters(model))
    )


def _partitions_expire(model: type[Model], retention: dict[int, int], now: datetime) -> tuple[int, dict]:
    """Drop the table's closed partitions that may go; returns (dropped, {partition: longest retention})
    for the closed partitions kept, whose rows of the longest-kept companies wait for their drop."""
    dropped, waiting = 0, {}
    for partition in partitions_list(model._meta.db_table):
        if partition.closed_at is None:
            continue
        longest = max((retention.get(company, 0) for company in companies_in(partition)), default=0)
        if partition.closed_at + timedelta(days=longest) < now and not _still_needed(model, partition):
            partition_drop(partition)
            if model is IdentifyLink:
                IdentifyKey.objects.filter(row_id__gte=partition.lo, row_id__lt=partition.hi).delete()
            dropped += 1
            continue
        if partition.opened_at is not None and partition.closed_at - partition.opened_at <= PERIOD + timedelta(days=1):
            waiting[partition] = longest  # (the partition of the rows from before partitioning has no such bound)
    return dropped, waiting


def retention_apply(
    *, now: datetime | None = None, batch_size: int = BATCH_SIZE, budget_seconds: float = 1200.0
) -> dict[str, int]:
    """Drop expired partitions, delete settled rows past retention, and expired keys. Returns counts."""
    now = now or timezone.now()
    deadline = time.monotonic() + budget_seconds
    counts = {name: 0 for name, _model in RAW} | {"partitions_dropped": 0, "idempotency_keys": 0, "sdk_event_keys": 0}
    companies = list(Company.objects.select_related("plan").order_by("id"))
    retention = {company.id: company.retention_days for company in companies}
    for name, model in RAW:
        dropped, waiting = _partitions_expire(model, retention, now)
        counts["partitions_dropped"] += dropped
        settled = export_state_q(model=model, state=ExportState.EXPORTED) | export_state_q(
            model=model, state=ExportState.SKIPPED
        )
        for company in companies:
            cutoff = now - timedelta(days=company.retention_days)
            old = model.objects.filter(settled, company_id=company.id, received_at__lt=cutoff)
            for keep in _keep_filters(model):  # never delete an event the analytics fold has not counted yet
                old = old.filter(**keep)
            for partition, longest in waiting.items():
                if company.retention_days >= longest:
                    old = old.exclude(partition.ids())
            counts[name] += _delete_in_batches(old, batch_size=batch_size, deadline=deadline)
    counts["sdk_event_keys"] = _sdk_keys_expire(companies, now=now, batch_size=batch_size, deadline=deadline)
    expired = IdempotencyKey.objects.filter(
        created_at__lt=now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    )
    counts["idempotency_keys"] = _delete_in_batches(expired, batch_size=batch_size, deadline=deadline)
    return counts


def _sdk_keys_expire(companies: list[Company], *, now: datetime, batch_size: int, deadline: float) -> int:
    deleted = 0
    apps: dict[int, list[int]] = {}
    for app_id, company_id in Application.objects.values_list("id", "company_id"):
        apps.setdefault(company_id, []).append(app_id)
    for company in companies:
        keep_days = max(settings.SDK_DEDUP_DAYS, company.retention_days + PERIOD.days)
        cutoff = now - timedelta(days=keep_days)
        while apps.get(company.id) and time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(_SDK_KEYS_EXPIRED, [apps[company.id], cutoff, batch_size])
                deleted += cursor.rowcount
            if cursor.rowcount < batch_size:
                break
    return deleted
