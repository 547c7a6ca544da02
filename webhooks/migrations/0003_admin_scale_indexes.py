from django.contrib.postgres.indexes import BrinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """Admin lists at 10 million rows: the event type filter and "created within" through BRIN.

    CONCURRENTLY: building these on a large live table must not block delivery.
    """

    atomic = False

    dependencies = [
        ("webhooks", "0002_admin_list_indexes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="webhookmessage",
            index=models.Index(fields=["event_type", "id"], name="webhookmessage_type_id"),
        ),
        AddIndexConcurrently(
            model_name="webhookmessage",
            index=BrinIndex(fields=["created_at"], autosummarize=True, name="webhookmessage_created_brin"),
        ),
    ]
