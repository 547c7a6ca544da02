"""Resolve `--app UUID` to an application, with a clear error instead of a traceback."""

import uuid

from django.core.management.base import CommandError

from apps_registry.models import Application


def application_from_option(value: str) -> Application:
    try:
        app_uuid = uuid.UUID(value)
    except ValueError:
        raise CommandError(f"--app must be an application uuid, got {value!r}") from None
    app = Application.objects.select_related("company").filter(uuid=app_uuid).first()
    if app is None:
        raise CommandError(f"No application with uuid {app_uuid}")
    return app
