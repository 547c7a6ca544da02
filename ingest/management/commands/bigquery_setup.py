"""`manage.py bigquery_setup`: create the BigQuery dataset and tables (idempotent; schemas in ingest/bigquery.py)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingest import bigquery


class Command(BaseCommand):
    help = "Create the BigQuery dataset and the events, sdk_events and identify_links tables if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        if not bigquery.is_enabled():
            raise CommandError("BIGQUERY_PROJECT is not set: export is off, nothing to set up.")
        created = bigquery.dataset_and_tables_ensure()
        for name in created:
            self.stdout.write(f"created {name}")
        if not created:
            self.stdout.write(f"{settings.BIGQUERY_PROJECT}.{settings.BIGQUERY_DATASET}: already up to date")
