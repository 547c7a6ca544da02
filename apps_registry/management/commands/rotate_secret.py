"""rotate_secret --app UUID [--expire-old-in SECONDS] [--json]

Issues a new API secret; the live old ones keep working until they expire (default 24 h) or are
revoked, so clients can switch without dropping events.
"""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps_registry.services import api_secret_rotate
from apps_registry.snippets import ingest_url

from ._app import application_from_option
from ._output import emit


class Command(BaseCommand):
    help = "Issue a new API secret for an application; old secrets expire later (default 24 h)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--app", required=True, help="Application uuid.")
        parser.add_argument(
            "--expire-old-in",
            type=int,
            default=24 * 3600,
            help="Seconds the current secrets keep working (default 86400; 0 ends them now).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options) -> None:
        if options["expire_old_in"] < 0:
            raise CommandError("--expire-old-in must be zero or more seconds")
        app = application_from_option(options["app"])
        secret = api_secret_rotate(application=app, expire_old_in=timedelta(seconds=options["expire_old_in"]))
        old = app.secrets.filter(revoked_at__isnull=True, expires_at__isnull=False).order_by("-expires_at").first()
        emit(
            self,
            {
                "app_uuid": str(app.uuid),
                "api_secret": secret,
                "old_secrets_expire_at": old.expires_at.isoformat() if old and old.expires_at else None,
                "ingest_url": ingest_url(),
            },
            as_json=options["json"],
            title=f"Rotated the API secret of {app.name!r}.",
        )
