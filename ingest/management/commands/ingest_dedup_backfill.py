"""`manage.py ingest_dedup_backfill [--batch 50000]`: fill the dedup key tables before partitioning.

Step 2 of upgrading a large database to the partitioned raw tables (README, "Partitioned raw
tables"), between migrations 0010 and 0011, while ingest runs on the old code: keys of the rows
stored so far are written in id order, in short transactions, and only up to ids that no running
writer can still commit below (ingest/horizon.py). So every row up to the highest row id a key
table holds has its key, and migration 0011 adds only the rows stored after that, under its locks.
Safe to stop and run again; rows with a key already are skipped.
"""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction

from ingest import horizon

_TABLES = {
    "ingest_sdkevent": (
        "ingest_sdkeventkey",
        "INSERT INTO ingest_sdkeventkey (application_id, event_id, received_at, row_id)"
        " SELECT application_id, event_id, received_at, id FROM ingest_sdkevent",
    ),
    "ingest_identifylink": (
        "ingest_identifykey",
        "INSERT INTO ingest_identifykey (application_id, anon_id, user_id, row_id)"
        " SELECT application_id, anon_id, user_id, id FROM ingest_identifylink",
    ),
}


class _Horizon:
    safe_upto = 0
    horizon_id = 0
    horizon_holders: list[str] = []


class Command(BaseCommand):
    help = "Write the SDK event and identify link dedup keys of the rows stored so far (before migration 0011)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=50_000, help="Rows per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        for table, (keys, insert) in _TABLES.items():
            state = _Horizon()
            with connection.cursor() as cursor:
                while True:  # until the ids drawn at one look are all committed or gone
                    horizon.advance(cursor, table, state)
                    if state.safe_upto or (state.horizon_id == 0 and not state.horizon_holders):
                        break
                    time.sleep(0.05)
                cursor.execute(f"SELECT coalesce(max(row_id), 0) FROM {keys}")  # noqa: S608 (a constant)
                done = cursor.fetchone()[0]
            written = 0
            while done < state.safe_upto:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        f"SELECT max(id) FROM (SELECT id FROM {table} WHERE id > %s AND id <= %s"  # noqa: S608
                        " ORDER BY id LIMIT %s) t",
                        [done, state.safe_upto, options["batch"]],
                    )
                    upto = cursor.fetchone()[0] or state.safe_upto
                    cursor.execute(f"{insert} WHERE id > %s AND id <= %s ON CONFLICT DO NOTHING", [done, upto])
                    written += cursor.rowcount
                done = upto
            self.stdout.write(f"{keys}: {written} keys written, rows up to id {done} covered")
