"""Webhook targets (webhooks/targets.py): refused when an endpoint is saved, and again when a message is sent.

The suite allows private targets (receivers listen on loopback); each test here that checks a
refusal turns WEBHOOK_ALLOW_PRIVATE_TARGETS off itself.
"""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.factories import MembershipFactory, WebhookEndpointFactory, WebhookMessageFactory
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from webhooks.services import endpoint_create

from .conftest import run_worker_once

pytestmark = pytest.mark.django_db

INTERNAL = [
    "http://127.0.0.1/hook",  # loopback
    "http://localhost:8000/hook",
    "http://10.1.2.3/hook",  # private
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "http://100.64.0.1/hook",  # CGNAT (shared address space)
    "http://0.0.0.0/hook",  # unspecified
    "https://192.0.2.7/hook",  # documentation (TEST-NET-1)
    "https://203.0.113.9/hook",  # documentation (TEST-NET-3)
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "https://[2001:db8::1]/hook",  # documentation
    "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped private
    "http://2130706433/hook",  # 127.0.0.1 written as a number
    "http://printer.internal/hook",
]


@pytest.fixture
def refuse_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False


@pytest.fixture
def admin_client(company, client):
    client.force_login(MembershipFactory(company=company).user)
    return client


def _add_form(company, url):
    return {"company": company.pk, "url": url, "event_types": ["onboarding.started"], "is_active": "on"}


@pytest.mark.usefixtures("refuse_private")
@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_target_is_refused_when_saved(url, company, application, admin_client):
    with pytest.raises(ValidationError, match=r"non-public address|internal name"):
        endpoint_create(company=company, url=url, event_types=["onboarding.started"])
    with pytest.raises(CommandError, match=r"non-public address|internal name"):
        call_command("create_webhook", "--app", str(application.uuid), "--url", url, "--events", "onboarding.started")
    response = admin_client.post(reverse("admin:webhooks_webhookendpoint_add"), _add_form(company, url))
    assert response.status_code == 200  # the form again, with the reason (or "Enter a valid URL" for odd forms)
    page = response.content.decode()
    assert any(reason in page for reason in ("non-public address", "internal name", "Enter a valid URL")), url
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.usefixtures("refuse_private")
def test_changing_the_url_to_an_internal_one_is_refused(company, admin_client):
    endpoint = endpoint_create(company=company, url="https://93.184.215.14/hook", event_types=["user.identified"])
    data = {**_add_form(company, "http://10.0.0.8/hook"), "description": ""}
    response = admin_client.post(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.endpoint.pk]), data)
    assert "non-public address (10.0.0.8)" in response.content.decode()
    endpoint.endpoint.refresh_from_db()
    assert endpoint.endpoint.url == "https://93.184.215.14/hook"


@pytest.mark.usefixtures("refuse_private")
@pytest.mark.parametrize("url", ["https://93.184.215.14/hook", "https://hooks.example.com/in"])
def test_a_public_or_not_yet_resolvable_target_is_accepted(url, company):
    created = endpoint_create(company=company, url=url, event_types=["onboarding.started"])
    assert WebhookEndpoint.objects.get().url == created.endpoint.url == url


def test_internal_targets_are_accepted_where_the_setting_allows_them(company, receiver):
    created = endpoint_create(company=company, url=receiver.url, event_types=["onboarding.started"])
    assert created.endpoint.pk


@pytest.mark.parametrize("url", ["https://bob:hunter2@hooks.example.com/in", "https://token@hooks.example.com/in"])
def test_credentials_in_the_url_are_refused(url, company, application, admin_client):
    with pytest.raises(ValidationError, match="credentials in URLs are not stored"):
        endpoint_create(company=company, url=url, event_types=["onboarding.started"])
    with pytest.raises(CommandError, match="credentials in URLs are not stored"):
        call_command("create_webhook", "--app", str(application.uuid), "--url", url, "--events", "onboarding.started")
    response = admin_client.post(reverse("admin:webhooks_webhookendpoint_add"), _add_form(company, url))
    assert "credentials in URLs are not stored" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_password_saved_before_the_refusal_is_never_shown(company, admin_client):
    endpoint = WebhookEndpointFactory(company=company, url="https://bob:hunter2@hooks.example.com/in")
    WebhookMessageFactory(endpoint=endpoint)
    for name in ("webhookendpoint_changelist", "webhookmessage_changelist"):
        page = admin_client.get(reverse(f"admin:webhooks_{name}")).content.decode()
        assert "hunter2" not in page, name
        assert "https://bob:•••@hooks.example.com/in" in page, name


def test_a_target_refused_at_send_time_disables_the_endpoint_without_spending_retries(
    company, settings, receiver, admin_client
):
    # Given an endpoint saved while its host was allowed (DNS can change between save and send)
    endpoint = endpoint_create(company=company, url=receiver.url, event_types=["onboarding.started"]).endpoint
    message = WebhookMessageFactory(endpoint=endpoint)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    # When the worker tries to deliver, and tries again later
    run_worker_once()
    run_worker_once()

    # Then nothing was sent, one attempt says why, and the retry schedule is untouched
    assert receiver.requests == []
    [attempt] = WebhookAttempt.objects.filter(message=message)
    assert "non-public address" in attempt.error
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.PENDING
    assert message.attempt_count == 0
    # and the endpoint is disabled, with the reason shown on its page
    endpoint.refresh_from_db()
    assert endpoint.is_active is False
    assert endpoint.disabled_reason.startswith("Delivery refused: ")
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert "Delivery refused" in page

    # Once allowed again (a fixed URL) and re-enabled, the message goes out with its full schedule ahead
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    admin_client.post(reverse("admin:webhooks_webhookendpoint_reenable", args=[endpoint.pk]))
    run_worker_once()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [message.pk]


@pytest.mark.parametrize("url", ["http://hooks.example.com:0/in", "https://93.184.215.14:0/hook", "http://[::1]:00/x"])
def test_port_zero_is_refused_when_saved_whatever_the_private_targets_setting(url, company, application, admin_client):
    """`urlsplit(...).port` is 0 there, which a `port or 80` check mistook for "no port"."""
    with pytest.raises(ValidationError, match="Port 0"):
        endpoint_create(company=company, url=url, event_types=["onboarding.started"])
    with pytest.raises(CommandError, match="Port 0"):
        call_command("create_webhook", "--app", str(application.uuid), "--url", url, "--events", "onboarding.started")
    response = admin_client.post(reverse("admin:webhooks_webhookendpoint_add"), _add_form(company, url))
    assert "Port 0 is not a port" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
