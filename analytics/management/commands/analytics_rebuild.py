"""analytics_rebuild --app UUID [--since YYYY-MM-DD]: recompute an app's rollups from the raw rows still stored."""

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.fold import rollups_rebuild
from apps_registry.management.commands._app import application_from_option

BAR_WIDTH = 40


class Command(BaseCommand):
    help = (
        "Recompute an application's rollups from its stored raw rows, from --since (default: its oldest stored "
        "row). Idempotent; days before that keep their rollups; plan usage is not recounted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app", required=True, help="Application uuid.")
        parser.add_argument("--since", help="First UTC day to rebuild (YYYY-MM-DD).")

    def handle(self, *args: Any, **options: Any) -> None:
        app = application_from_option(options["app"])
        since = None
        if options["since"]:
            try:
                since = date.fromisoformat(options["since"])
            except ValueError as exc:
                raise CommandError("--since must be YYYY-MM-DD.") from exc
        on_terminal = self.stdout.isatty()
        result = rollups_rebuild(app_id=app.id, since=since, progress=self._bar if on_terminal else None)
        if on_terminal:
            self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(f"Rebuilt the rollups of {app.name!r} from {result['since']}: {result['rows']:,} rows.")
        )

    def _bar(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        filled = int(BAR_WIDTH * share)
        self.stdout.write(
            f"\r[{'#' * filled}{' ' * (BAR_WIDTH - filled)}] {share:6.1%} {done:,}/{total:,} rows", ending=""
        )
        self.stdout.flush()
