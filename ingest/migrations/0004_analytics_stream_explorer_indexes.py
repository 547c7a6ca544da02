# The analytics Event stream and Event explorer (issue 11). Built CONCURRENTLY: on a live table a
# plain CREATE INDEX would block ingest's INSERTs for as long as the build takes.
# `event_app_occurred` becomes a covering index with the same key (one index, not two, on the hot path).
# The statistics on the explorer's bucket expressions cost inserts nothing; without them PostgreSQL
# guesses one group per row and sorts millions of rows instead of hash-aggregating a few hundred groups.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

_BUCKETS = ("hour", "day", "week", "month")
_STATISTICS = [(f"{table}_bucket_{unit}", table) for table in ("ingest_event", "ingest_sdkevent") for unit in _BUCKETS]
CREATE_STATISTICS = "; ".join(
    f"CREATE STATISTICS IF NOT EXISTS {name} ON (date_trunc('{name.rsplit('_', 1)[1]}', occurred_at AT TIME ZONE 'UTC')) "
    f"FROM {table}"
    for name, table in _STATISTICS
)
DROP_STATISTICS = "; ".join(f"DROP STATISTICS IF EXISTS {name}" for name, _ in _STATISTICS)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("apps_registry", "0001_initial"),
        ("ingest", "0003_outbox_rows_lean_foreign_keys"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                fields=["application", "occurred_at"], include=["event", "user_hash"], name="event_app_occurred_cover"
            ),
        ),
        RemoveIndexConcurrently(model_name="event", name="event_app_occurred"),
        migrations.RunSQL(CREATE_STATISTICS, DROP_STATISTICS),
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
