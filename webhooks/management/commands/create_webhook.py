"""create_webhook --app UUID --url URL --events a,b,c [--json]: subscribe an endpoint; the secret is printed once."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps_registry.management.commands._app import application_from_option
from apps_registry.management.commands._output import emit
from webhooks.services import endpoint_create


class Command(BaseCommand):
    help = "Create a webhook endpoint for an application and print its signing secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app", required=True, help="Application uuid (only its events are sent).")
        parser.add_argument("--url", required=True, help="Where to POST the webhooks (http or https).")
        parser.add_argument(
            "--events",
            required=True,
            help="Comma-separated: onboarding.started,onboarding.completed,experiment.exposure,user.identified",
        )
        parser.add_argument("--description", default="", help="Shown in the admin.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        app = application_from_option(options["app"])
        events = [e.strip() for e in options["events"].split(",") if e.strip()]
        try:
            created = endpoint_create(
                company=app.company,
                application=app,
                url=options["url"],
                event_types=events,
                description=options["description"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        endpoint = created.endpoint
        emit(
            self,
            {
                "id": endpoint.pk,
                "secret": created.secret,
                "url": endpoint.url,
                "events": ",".join(endpoint.event_types),
                "app_uuid": str(app.uuid),
                "company": app.company.name,
            },
            as_json=options["json"],
            title=f"Created a webhook endpoint for {app.name!r}.",
        )
