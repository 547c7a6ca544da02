"""The fold finds its rows by cursor and horizon, as the export does: the queue triggers go.

Dropping a trigger takes the table's ACCESS EXCLUSIVE lock, so every insert that drew an id before it
has committed (and was queued by the trigger) or rolled back, and every later insert draws a larger
id: the cursor starts at the sequence's current value, and nothing is queued twice or missed.
"""

import django.contrib.postgres.fields
from django.db import migrations, models

FORWARD_SQL = """
DROP TRIGGER IF EXISTS analytics_fold_queue ON ingest_event;
DROP TRIGGER IF EXISTS analytics_fold_queue ON ingest_sdkevent;
DROP FUNCTION IF EXISTS analytics_queue_events();
DROP FUNCTION IF EXISTS analytics_queue_sdkevents();
INSERT INTO analytics_foldcursor (source, queued_upto, safe_upto, horizon_id, horizon_holders)
SELECT s, v, v, v, '{}' FROM (VALUES
    (1, coalesce(pg_sequence_last_value(pg_get_serial_sequence('ingest_event', 'id')), 0)),
    (2, coalesce(pg_sequence_last_value(pg_get_serial_sequence('ingest_sdkevent', 'id')), 0))) c(s, v);
"""

# Back to the triggers: rows past the cursor are queued first (the tables are locked by the CREATE TRIGGER).
REVERSE_SQL = """
CREATE FUNCTION analytics_queue_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_foldqueue (source, event_ids)
    SELECT 1, array_agg(id ORDER BY id) FROM new_rows GROUP BY id / 1000 ORDER BY id / 1000;
    RETURN NULL;
END $$;
CREATE FUNCTION analytics_queue_sdkevents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_foldqueue (source, event_ids)
    SELECT 2, array_agg(id ORDER BY id) FROM new_rows GROUP BY id / 1000 ORDER BY id / 1000;
    RETURN NULL;
END $$;
CREATE TRIGGER analytics_fold_queue AFTER INSERT ON ingest_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_queue_events();
CREATE TRIGGER analytics_fold_queue AFTER INSERT ON ingest_sdkevent
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_queue_sdkevents();
INSERT INTO analytics_foldqueue (source, event_ids)
SELECT 1, array_agg(id ORDER BY id) FROM ingest_event
WHERE id > coalesce((SELECT queued_upto FROM analytics_foldcursor WHERE source = 1), 0) GROUP BY id / 1000;
INSERT INTO analytics_foldqueue (source, event_ids)
SELECT 2, array_agg(id ORDER BY id) FROM ingest_sdkevent
WHERE id > coalesce((SELECT queued_upto FROM analytics_foldcursor WHERE source = 2), 0) GROUP BY id / 1000;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0006_health_model_history"),
        ("ingest", "0009_export_ledger"),
    ]

    operations = [
        migrations.CreateModel(
            name="FoldCursor",
            fields=[
                ("source", models.SmallIntegerField(primary_key=True, serialize=False)),
                ("queued_upto", models.BigIntegerField(default=0)),
                ("safe_upto", models.BigIntegerField(default=0)),
                ("horizon_id", models.BigIntegerField(default=0)),
                (
                    "horizon_holders",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.TextField(), blank=True, default=list, size=None
                    ),
                ),
            ],
        ),
        migrations.RunSQL(FORWARD_SQL, REVERSE_SQL),
    ]
