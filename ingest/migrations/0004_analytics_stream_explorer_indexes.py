# The analytics Event stream and Event explorer (issue 11). Built CONCURRENTLY: on a live table a
# plain CREATE INDEX would block ingest's INSERTs for as long as the build takes.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("apps_registry", "0001_initial"),
        ("ingest", "0003_outbox_rows_lean_foreign_keys"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(fields=["application", "received_at", "id"], name="event_app_received"),
        ),
        AddIndexConcurrently(
            model_name="sdkevent",
            index=models.Index(
                condition=models.Q(("consent_analytics", True)),
                fields=["application", "received_at", "id"],
                name="sdkevent_app_received",
            ),
        ),
        AddIndexConcurrently(
            model_name="sdkevent",
            index=models.Index(
                condition=models.Q(("consent_analytics", True)),
                fields=["application", "occurred_at"],
                name="sdkevent_app_occurred",
            ),
        ),
    ]
