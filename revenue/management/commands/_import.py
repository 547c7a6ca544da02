"""Shared body of `import_orgs` and `import_subscriptions`: run the import, print the report, exit 1 on errors."""

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps_registry.models import Application

from ... import imports
from ...services import import_run


class ImportCommand(BaseCommand):
    kind = ""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app", required=True, help="The application's uuid.")
        parser.add_argument("file", help="The CSV file ('-' reads standard input).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count; change nothing.")
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        app = Application.objects.select_related("company").filter(uuid=options["app"]).first()
        if app is None:
            raise CommandError(f"No application {options['app']!r}.")
        if options["file"] == "-":
            data, name = sys.stdin.buffer.read(imports.MAX_FILE_BYTES + 1), "<stdin>"
        else:
            path = Path(options["file"])
            if not path.is_file():
                raise CommandError(f"No file {path}.")
            with path.open("rb") as f:
                data = f.read(imports.MAX_FILE_BYTES + 1)
            name = path.name
        if len(data) > imports.MAX_FILE_BYTES:
            raise CommandError(f"The file is larger than {imports.MAX_FILE_BYTES // (1024 * 1024)} MB.")
        report = import_run(
            app=app, kind=self.kind, data=data, file_name=name, via="command", dry_run=options["dry_run"]
        )
        if options["json"]:
            self.stdout.write(json.dumps(report, default=str))
        else:
            self.stdout.write(f"{report['status']}: {json.dumps(report['counts'], default=str)}")
            for error in report["errors"]:
                self.stdout.write(f"  line {error['line']}, {error['column']}: {error['reason']}")
        if report["error_count"]:
            sys.exit(1)
