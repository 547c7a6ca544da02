"""`manage.py export_status [--json]`: export lag and backlog, read straight from PostgreSQL.

For operators during an incident: it asks the database, not a worker, so it answers while every
export worker is stuck on BigQuery.
"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ingest.services.export import export_status_get


class Command(BaseCommand):
    help = "Print the export lag (oldest row not yet exported), pending and sending rows, dead letters."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON object instead of a line of text.")

    def handle(self, *args: Any, **options: Any) -> None:
        status = export_status_get()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "enabled": status.enabled,
                        "lag_seconds": round(status.lag_seconds, 1),
                        "oldest_unexported_at": status.oldest_unexported_at.isoformat()
                        if status.oldest_unexported_at
                        else None,
                        "pending": status.pending_count,
                        "sending": status.sending_count,
                        "dead": status.dead_count,
                        "batches_in_flight": status.batches_in_flight,
                        "batches_expired": status.batches_expired,
                    }
                )
            )
            return
        if not status.enabled:
            self.stdout.write(f"export off (no BIGQUERY_PROJECT); {status.pending_count} rows pending")
            return
        self.stdout.write(
            f"lag {status.lag_seconds:.1f}s; {status.pending_count} pending, {status.sending_count} sending "
            f"({status.batches_in_flight} batches, {status.batches_expired} past their lease); {status.dead_count} dead"
        )
