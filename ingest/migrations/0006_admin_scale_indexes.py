from django.contrib.postgres.indexes import BrinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """Admin lists at 10 million rows: time windows through BRIN, the rare "skipped" export state.

    CONCURRENTLY: building these on a large live table must not block ingest.
    """

    atomic = False

    dependencies = [
        ("ingest", "0005_merge_20261125_1722"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=BrinIndex(fields=["received_at"], autosummarize=True, name="event_received_brin"),
        ),
        AddIndexConcurrently(
            model_name="sdkevent",
            index=models.Index(fields=["id"], condition=models.Q(export_state=3), name="sdkevent_export_skipped"),
        ),
        AddIndexConcurrently(
            model_name="sdkevent",
            index=BrinIndex(fields=["received_at"], autosummarize=True, name="sdkevent_received_brin"),
        ),
        AddIndexConcurrently(
            model_name="identifylink",
            index=BrinIndex(fields=["received_at"], autosummarize=True, name="identify_received_brin"),
        ),
    ]
