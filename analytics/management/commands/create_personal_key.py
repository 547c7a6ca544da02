"""create_personal_key --user USERNAME [--name NAME] [--json]: a key for the analytics API, printed once."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.services import personal_key_create
from apps_registry.management.commands._output import emit


class Command(BaseCommand):
    help = "Create a personal API key (Authorization: Bearer ...) that reads the analytics API as the user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="Username.")
        parser.add_argument("--name", default="", help="A label, to tell keys apart.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {options['user']!r}.")
        key, raw = personal_key_create(user=user, name=options["name"])
        emit(
            self,
            {"key": raw, "prefix": key.prefix, "user": user.get_username()},
            as_json=options["json"],
            title=f"Created a personal API key for {user.get_username()!r}.",
        )
