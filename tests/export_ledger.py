"""Export states as users see them, read from the export ledger (rows store only pending, skipped or dead)."""

from collections import Counter
from datetime import timedelta

from django.db.models import Model, QuerySet
from django.utils import timezone

from ingest.models import ExportBatch, ExportCursor, ExportRetry, ExportState
from ingest.services.export import export_state_annotate, export_state_q, spec_of


def in_state(model: type[Model], state: ExportState) -> QuerySet:
    """The rows of `model` in `state` (what the admin's export-state filter lists)."""
    return model.objects.filter(export_state_q(model=model, state=state))


def state_of(row: Model) -> ExportState:
    return ExportState(export_state_annotate(type(row).objects.filter(pk=row.pk)).get().export_status)


def states(model: type[Model]) -> dict[ExportState, int]:
    """How many rows of `model` are in each export state."""
    return dict(
        Counter(
            ExportState(s) for s in export_state_annotate(model.objects.all()).values_list("export_status", flat=True)
        )
    )


def mark(row: Model, state: ExportState) -> None:
    """Put a freshly stored row in `state` as the exporter would (claimed, and exported or being sent).

    Rows stored before it and still pending stay pending (owed again below the cursor).
    """
    model = type(row)
    spec = spec_of(model)
    cursor, _ = ExportCursor.objects.get_or_create(table=spec.name)
    pending_below = list(
        in_state(model, ExportState.PENDING)
        .filter(id__gt=cursor.claimed_upto, id__lt=row.pk)
        .values_list("id", flat=True)
    )
    if pending_below:
        ExportRetry.objects.create(table=spec.name, ids=pending_below)
    upto = max(cursor.claimed_upto, row.pk)
    ExportCursor.objects.filter(table=spec.name).update(claimed_upto=upto, safe_upto=upto, horizon_id=upto)
    if state == ExportState.SENDING:
        ExportBatch.objects.create(
            table=spec.name, ids=[row.pk], row_count=1, lease_until=timezone.now() + timedelta(minutes=3)
        )
