"""create_sdk_key --app UUID [--json]: a new `x-api-key` for the SDK API, printed once."""

from django.core.management.base import BaseCommand

from apps_registry.services import sdk_key_create
from apps_registry.snippets import batch_url

from ._app import application_from_option
from ._output import emit


class Command(BaseCommand):
    help = "Create an SDK key (x-api-key) for an application and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--app", required=True, help="Application uuid.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options) -> None:
        app = application_from_option(options["app"])
        key = sdk_key_create(application=app)
        emit(
            self,
            {
                "app_uuid": str(app.uuid),
                "sdk_key": key,
                "prefix": "_".join(key.split("_", 2)[:2]),
                "batch_url": batch_url(),
            },
            as_json=options["json"],
            title=f"Created an SDK key for {app.name!r}.",
        )
