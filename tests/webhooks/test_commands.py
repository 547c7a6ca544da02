"""manage.py create_webhook (webhooks/management/commands/create_webhook.py)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def test_create_webhook_prints_id_and_secret_as_json(application):
    out = StringIO()
    call_command(
        "create_webhook",
        "--app",
        str(application.uuid),
        "--url",
        "https://example.com/hook",
        "--events",
        "onboarding.started, user.identified",
        "--json",
        stdout=out,
    )

    printed = json.loads(out.getvalue())
    endpoint = WebhookEndpoint.objects.get(pk=printed["id"])
    assert printed["secret"].startswith("whsec_")
    assert endpoint.secret == printed["secret"]
    assert endpoint.application == application
    assert endpoint.company == application.company
    assert endpoint.event_types == ["onboarding.started", "user.identified"]


def test_an_unknown_event_type_is_a_clear_error(application):
    with pytest.raises(CommandError, match="event types must be among"):
        call_command("create_webhook", "--app", str(application.uuid), "--url", "https://x.test", "--events", "nope")
    assert not WebhookEndpoint.objects.exists()
