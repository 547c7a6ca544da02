"""The raw tables become range-partitioned by id (ingest/partitions.py); SDK and identify dedup move to key tables.

Upgrading keeps every row where it is: each plain table is renamed to its partition 0 and attached
to a new partitioned table of the old name, with the same columns, id sequence value and indexes
(its own indexes are attached, not rebuilt). The bound is proved by a CHECK constraint validated
first, so ATTACH does not scan again. The unique constraints PostgreSQL cannot enforce across
partitions are replaced: (application, event_id) of SDK events and (application, anon_id,
user_id) of identify links by the key tables (0010), filled here with the rows past the highest
one they hold; `event_id` and `link_id` stay unique per partition (the old table keeps its unique
index; new partitions get their own).

All of it runs in one transaction holding the tables' locks. On a large table, two steps move
ahead, while ingest runs (README, "Partitioned raw tables"): the CHECK constraint
`<table>_partition_bound`, added NOT VALID and validated by hand (found and used here), and the
keys, filled by `manage.py ingest_dedup_backfill` (so only the rows stored since are added here).

The reverse copies every row back into one plain table (for tests, and rollbacks of a young install).
"""

import uuid
from django.db import migrations, models

BLOCK = 1 << 40  # ids per partition: ingest.partitions.BLOCK when this was written
# table: (unique constraints dropped, replaced by a key table; column unique per partition)
TABLES = {
    "ingest_event": ([], "event_id"),
    "ingest_sdkevent": ([("sdkevent_app_event_id_uniq", "application_id, event_id")], None),
    "ingest_identifylink": ([("identify_app_anon_user_uniq", "application_id, anon_id, user_id")], "link_id"),
}
# ingest_dedup_backfill fills keys in id order up to ids no writer can still commit below, so every
# row up to the highest row id a key table holds has its key.
KEYS_BACKFILL = [
    """INSERT INTO ingest_sdkeventkey (application_id, event_id, received_at, row_id)
       SELECT application_id, event_id, received_at, id FROM ingest_sdkevent
       WHERE id > (SELECT coalesce(max(row_id), 0) FROM ingest_sdkeventkey) ON CONFLICT DO NOTHING""",
    """INSERT INTO ingest_identifykey (application_id, anon_id, user_id, row_id)
       SELECT application_id, anon_id, user_id, id FROM ingest_identifylink
       WHERE id > (SELECT coalesce(max(row_id), 0) FROM ingest_identifykey) ON CONFLICT DO NOTHING""",
]
_STATISTICS_SQL = "SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext WHERE stxrelid = %s::regclass"
_INDEXES_SQL = """
SELECT i.relname, pg_get_indexdef(i.oid), c.conname, c.contype
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
WHERE x.indrelid = %s::regclass ORDER BY i.relname
"""


def _p0(name: str) -> str:
    renamed = f"p0_{name}"
    if len(renamed) > 63:
        raise ValueError(f"index name too long to keep on partition 0: {renamed}")
    return renamed


def _sequence_state(cursor, table: str) -> tuple[int, bool]:
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value, is_called FROM {sequence}")  # noqa: S608 (a catalog name)
    return cursor.fetchone()


def _partition(cursor, table: str, number: int, unique_column: str | None) -> None:
    name = f"{table}_p{number}"
    cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    if unique_column:
        cursor.execute(f"CREATE UNIQUE INDEX {name}_{unique_column}_uniq ON {name} ({unique_column})")
    lo, hi = number * BLOCK, (number + 1) * BLOCK
    cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")


def partition_tables(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (now,) = cursor.fetchone()
        for table, (dropped, unique_column) in TABLES.items():
            p0 = f"{table}_p0"
            for name, _columns in dropped:
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            last_value, is_called = _sequence_state(cursor, table)
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608
            (had_rows,) = cursor.fetchone()
            cursor.execute(_INDEXES_SQL, [table])
            indexes = cursor.fetchall()
            cursor.execute(_STATISTICS_SQL, [table])
            statistics = cursor.fetchall()
            cursor.execute(f"ALTER TABLE {table} RENAME TO {p0}")
            for name, _definition in statistics:
                cursor.execute(f"DROP STATISTICS {name}")  # made again on the parent below
            for relname, _definition, conname, _contype in indexes:
                if conname:
                    cursor.execute(f"ALTER TABLE {p0} RENAME CONSTRAINT {conname} TO {_p0(conname)}")
                else:
                    cursor.execute(f"ALTER INDEX {relname} RENAME TO {_p0(relname)}")
            cursor.execute(f"ALTER TABLE {p0} ALTER COLUMN id DROP IDENTITY")
            cursor.execute(
                f"CREATE TABLE {table} (LIKE {p0} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (id)"
            )
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_partition_bound")  # p0's own
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [table, last_value, is_called])
            for _relname, definition, conname, contype in indexes:
                if contype == "p":
                    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {conname} PRIMARY KEY (id)")
                elif contype is None:
                    cursor.execute(definition)  # names the table by its old name: the new parent
                # a unique constraint ("u") stays on partition 0 only: unique per partition
            for _name, definition in statistics:
                cursor.execute(definition)  # the planner's estimates for the whole table (explorer buckets)
            # Partition 0 takes every id up to the end of the sequence's block (below 2**40 but on a
            # database whose sequence was moved), and the next block's partition is made ahead.
            first = max(1, last_value // BLOCK + 1)
            bound = f"{table}_partition_bound"  # validated ahead by hand on a large table (README)
            cursor.execute(
                "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s AND convalidated",
                [p0, bound],
            )
            if cursor.fetchone() is None:
                cursor.execute(f"ALTER TABLE {p0} DROP CONSTRAINT IF EXISTS {bound}")
                cursor.execute(f"ALTER TABLE {p0} ADD CONSTRAINT {bound} CHECK (id < {first * BLOCK}) NOT VALID")
                cursor.execute(f"ALTER TABLE {p0} VALIDATE CONSTRAINT {bound}")
            cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {p0} FOR VALUES FROM (MINVALUE) TO ({first * BLOCK})")
            cursor.execute(f"ALTER TABLE {p0} DROP CONSTRAINT {bound}")
            _partition(cursor, table, first, unique_column)
            cursor.execute(
                'INSERT INTO ingest_rawpartition ("table", number, opened_at) VALUES (%s, 0, %s)',
                [table, None if had_rows else now],  # rows from before: their time span is not known
            )
        for statement in KEYS_BACKFILL:
            cursor.execute(statement)


def unpartition_tables(apps, schema_editor):
    """One plain table again, rebuilt from the partitioned one's definition (whatever partitions are left)."""
    with schema_editor.connection.cursor() as cursor:
        for table, (dropped, unique_column) in TABLES.items():
            plain = f"{table}_plain"
            last_value, is_called = _sequence_state(cursor, table)
            cursor.execute(_INDEXES_SQL, [table])
            indexes = cursor.fetchall()
            cursor.execute(_STATISTICS_SQL, [table])
            statistics = cursor.fetchall()
            cursor.execute(f"CREATE TABLE {plain} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            cursor.execute(f"INSERT INTO {plain} SELECT * FROM {table} ORDER BY id")  # noqa: S608
            cursor.execute(f"DROP TABLE {table}")
            cursor.execute(f"ALTER TABLE {plain} RENAME TO {table}")
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [table, last_value, is_called])
            for _relname, definition, conname, contype in indexes:
                if contype == "p":
                    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {conname} PRIMARY KEY (id)")
                else:
                    cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
            for _name, definition in statistics:
                cursor.execute(definition)
            if unique_column:
                cursor.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {table}_{unique_column}_key UNIQUE ({unique_column})"
                )
            for name, columns in dropped:
                cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({columns})")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0010_dedup_keys")]

    operations = [
        migrations.RunPython(partition_tables, unpartition_tables),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="identifylink", name="identify_app_anon_user_uniq"),
                migrations.RemoveConstraint(model_name="sdkevent", name="sdkevent_app_event_id_uniq"),
                migrations.AlterField(
                    model_name="event",
                    name="event_id",
                    field=models.UUIDField(default=uuid.uuid4, editable=False),
                ),
                migrations.AlterField(
                    model_name="identifylink",
                    name="link_id",
                    field=models.UUIDField(default=uuid.uuid4, editable=False),
                ),
            ],
        ),
    ]
