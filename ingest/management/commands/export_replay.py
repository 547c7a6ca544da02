"""`manage.py export_replay --table T --since ... --until ... [--dry-run]`: refill a rebuilt BigQuery.

Re-sends the rows of one table that PostgreSQL calls exported and received in [since, until).
Delete that range in BigQuery first: it deduplicates insert ids only for about a minute (see
ingest/services/replay.py and the README, "Replaying a range into a rebuilt BigQuery").
"""

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from ingest import bigquery
from ingest.bigquery import TABLES
from ingest.services.replay import ReplayError, ReplayReport, export_replay


def _moment(value: str, member: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is not None:
            parsed = datetime(day.year, day.month, day.day)  # noqa: DTZ001 (made UTC just below)
    if parsed is None:
        raise CommandError(f"{member}: {value!r} is not an ISO 8601 date or date-time (e.g. 2026-12-01T00:00:00Z)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Send again the rows of one table that PostgreSQL calls exported, received in [--since, --until), "
        "to a BigQuery rebuilt from scratch. Delete that range in BigQuery first (insert ids are "
        "deduplicated only briefly). Prints the row count first; --dry-run stops there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--table", required=True, choices=sorted(TABLES), help="BigQuery table to refill.")
        parser.add_argument("--since", required=True, help="Receive time from (inclusive), ISO 8601; UTC if no zone.")
        parser.add_argument("--until", required=True, help="Receive time to (exclusive), ISO 8601; UTC if no zone.")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows and send nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _moment(options["since"], "--since")
        until = _moment(options["until"], "--until")
        if until <= since:
            raise CommandError("--until must be later than --since")
        if not bigquery.is_enabled():
            raise CommandError("export is off (no BIGQUERY_PROJECT): there is no BigQuery to replay into")
        target = bigquery.table_id(TABLES[options["table"]])

        started: dict[str, str] = {}

        def counted(report: ReplayReport) -> None:
            started["replay_id"] = report.replay_id
            verb = "would send" if report.dry_run else "sending"
            self.stdout.write(
                f"{report.rows} exported rows of {report.table} received in [{since.isoformat()}, "
                f"{until.isoformat()}): {verb} them to {target}"
                + ("" if report.dry_run else f" with export_batch = '{report.replay_id}'")
            )

        def progress(report: ReplayReport) -> None:
            self.stdout.write(f"sent {report.sent}/{report.rows} ({100 * report.sent // max(report.rows, 1)} %)")

        try:
            report = export_replay(
                table=options["table"],
                since=since,
                until=until,
                dry_run=options["dry_run"],
                on_count=counted,
                on_progress=progress,
            )
        except ReplayError as exc:
            undo = f"DELETE FROM `{target}` WHERE export_batch = '{started.get('replay_id', '')}'"  # noqa: S608 (advice)
            raise CommandError(f"{exc}. To start over: {undo} (or delete the whole range), then run again.") from exc
        if report.dry_run:
            self.stdout.write("dry run: nothing sent")
        else:
            self.stdout.write(self.style.SUCCESS(f"done: {report.sent} rows sent to {target}"))
