"""The three credential commands, a contract for other tools: parse their JSON, then use what they print."""

import hashlib
import hmac
import json
import time
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps_registry.models import ApiSecret, Application, Company, Plan
from apps_registry.selectors import app_credentials_get, credentials_cache_clear, sdk_key_credentials_get
from apps_registry.services import api_secret_revoke

pytestmark = pytest.mark.django_db


def run(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def signs(app_uuid: str, secret: str) -> bool:
    """True when the server-side lookup accepts an HMAC made with `secret` right now."""
    credentials_cache_clear()
    body = b'{"event":"signup","customer_org_id":"o1"}'
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    live = app_credentials_get(app_uuid=uuid.UUID(app_uuid)).live_secrets(time.time())
    return any(hmac.compare_digest(hmac.new(s, body, hashlib.sha256).hexdigest(), signature) for s in live)


def test_create_application_prints_working_credentials(settings):
    settings.PUBLIC_INGEST_BASE_URL = "https://receive.example.test"

    out = run("create_application", "--company", "Acme", "--name", "Web", "--plan", "growth", "--events-per-month", "5")

    company = Company.objects.get(name="Acme")
    assert out["company_id"] == company.pk
    assert company.plan.tier == Plan.Tier.GROWTH
    assert company.events_per_month == 5
    assert out["ingest_url"] == "https://receive.example.test/v1/events"
    assert out["batch_url"] == "https://receive.example.test/api/v1/ingest/events"
    assert Application.objects.get(uuid=out["app_uuid"]).company == company
    assert signs(out["app_uuid"], out["api_secret"])
    assert sdk_key_credentials_get(key=out["sdk_key"]).app_uuid == uuid.UUID(out["app_uuid"])
    assert out["api_secret"] not in ApiSecret.objects.extra(select={"raw": "secret"}).values_list("raw", flat=True)[0]


def test_create_application_reuses_the_company_and_refuses_past_apps_max():
    first = run("create_application", "--company", "Solo", "--name", "One")  # trial: one app

    with pytest.raises(CommandError, match="the most its plan allows"):
        run("create_application", "--company", "Solo", "--name", "Two")

    assert Company.objects.filter(name="Solo").count() == 1
    assert Application.objects.filter(company_id=first["company_id"]).count() == 1


def test_human_readable_output_without_json():
    out = StringIO()
    call_command("create_application", "--company", "Acme", "--name", "Web", stdout=out)
    text = out.getvalue()
    assert "api_secret" in text
    assert "shown once" in text
    assert not text.lstrip().startswith("{")


def test_rotate_secret_old_one_works_until_expiry_or_revocation():
    created = run("create_application", "--company", "Acme", "--name", "Web")
    app_uuid, old = created["app_uuid"], created["api_secret"]

    rotated = run("rotate_secret", "--app", app_uuid)

    assert rotated["api_secret"] != old
    assert signs(app_uuid, rotated["api_secret"])
    assert signs(app_uuid, old)  # still inside its 24 h grace
    old_row = ApiSecret.objects.get(hint=old[-4:], application__uuid=app_uuid)
    assert 23.9 * 3600 < (old_row.expires_at - old_row.created_at).total_seconds() < 24.1 * 3600

    api_secret_revoke(secret=old_row)
    assert not signs(app_uuid, old)
    assert signs(app_uuid, rotated["api_secret"])


def test_rotate_secret_with_zero_grace_ends_the_old_secret_now():
    created = run("create_application", "--company", "Acme", "--name", "Web")

    rotated = run("rotate_secret", "--app", created["app_uuid"], "--expire-old-in", "0")

    assert not signs(created["app_uuid"], created["api_secret"])
    assert signs(created["app_uuid"], rotated["api_secret"])


def test_create_sdk_key_prints_a_new_working_key():
    created = run("create_application", "--company", "Acme", "--name", "Web")

    out = run("create_sdk_key", "--app", created["app_uuid"])

    assert out["sdk_key"] != created["sdk_key"]
    assert out["sdk_key"].startswith(out["prefix"] + "_")
    assert sdk_key_credentials_get(key=out["sdk_key"]).is_active
    assert sdk_key_credentials_get(key=created["sdk_key"]).is_active


@pytest.mark.parametrize("command", ["rotate_secret", "create_sdk_key"])
@pytest.mark.parametrize("value", ["not-a-uuid", str(uuid.uuid4())])
def test_unknown_app_is_a_clear_error(command, value):
    with pytest.raises(CommandError, match="uuid"):
        run(command, "--app", value)
