"""The webhooks back office (webhooks/admin.py): scoping, one-time secrets, and the recovery actions."""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from apps_registry.admin_scoping import SUPPORT_GROUP
from tests.factories import (
    ApplicationFactory,
    CompanyFactory,
    MembershipFactory,
    UserFactory,
    WebhookAttemptFactory,
    WebhookMessageFactory,
)
from webhooks.models import WebhookEndpoint, WebhookMessage

from .conftest import run_worker_once, verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def account_admin(company, client):
    membership = MembershipFactory(company=company)
    client.force_login(membership.user)
    return membership.user


@pytest.fixture
def support_client(client):
    user = UserFactory()
    user.groups.add(Group.objects.get_or_create(name=SUPPORT_GROUP)[0])
    client.force_login(user)
    return client


def _secret_on_page(response) -> str:
    return re.search(r'<code id="webhook-secret">([^<]+)</code>', response.content.decode()).group(1)


def test_an_account_admin_creates_an_endpoint_and_sees_its_secret_once(account_admin, client, application, receiver):
    # When the admin fills in the add form
    response = client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {
            "company": application.company_id,
            "application": application.pk,
            "url": receiver.url,
            "event_types": ["onboarding.started", "user.identified"],
            "description": "CRM sync",
            "is_active": "on",
        },
    )

    # Then the next page shows the secret, which is what the endpoint signs with
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = _secret_on_page(response)
    assert secret.startswith("whsec_")
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret
    assert endpoint.event_types == ["onboarding.started", "user.identified"]
    # and afterwards only a masked form is ever shown
    page = client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert secret not in page
    assert f"whsec_…{secret[-4:]}" in page


def test_an_account_admin_sees_only_their_company(account_admin, client, make_endpoint):
    mine, _ = make_endpoint()
    theirs, _ = make_endpoint(company=CompanyFactory(), url="http://example.com/other")

    listing = client.get(reverse("admin:webhooks_webhookendpoint_changelist")).content.decode()
    assert mine.url in listing
    assert "example.com/other" not in listing
    assert client.get(reverse("admin:webhooks_webhookendpoint_change", args=[theirs.pk])).status_code == 302
    assert client.post(reverse("admin:webhooks_webhookendpoint_send_test", args=[theirs.pk])).status_code == 404


def test_support_reads_but_cannot_act(support_client, make_endpoint):
    endpoint, secret = make_endpoint()

    page = support_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert page.status_code == 200
    assert secret not in page.content.decode()
    assert (
        support_client.post(reverse("admin:webhooks_webhookendpoint_send_test", args=[endpoint.pk])).status_code == 403
    )
    assert (
        support_client.post(reverse("admin:webhooks_webhookendpoint_rotate_secret", args=[endpoint.pk])).status_code
        == 403
    )
    assert not WebhookMessage.objects.exists()


def test_rotating_in_the_admin_shows_the_new_secret_once_and_signs_with_both(
    account_admin, client, make_endpoint, receiver
):
    endpoint, old = make_endpoint()

    response = client.post(reverse("admin:webhooks_webhookendpoint_rotate_secret", args=[endpoint.pk]))

    new = _secret_on_page(response)
    assert new != old
    client.post(reverse("admin:webhooks_webhookendpoint_send_test", args=[endpoint.pk]))
    run_worker_once()
    [request] = receiver.requests
    assert verify(old, request)["data"]["test"] is True
    assert verify(new, request)["type"] == "onboarding.started"


def test_the_message_page_lists_every_attempt_and_resends_with_the_same_id(
    account_admin, client, make_endpoint, receiver
):
    endpoint, secret = make_endpoint()
    message = WebhookMessageFactory(endpoint=endpoint, state=WebhookMessage.State.FAILED, attempt_count=4)
    WebhookAttemptFactory(message=message, status_code=500, response_body="boom", duration_ms=12)
    WebhookAttemptFactory(message=message, status_code=None, error="ConnectionRefused")

    response = client.get(reverse("admin:webhooks_webhookmessage_change", args=[quote(message.pk)]))
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    page = response.content.decode()
    assert "boom" in page
    assert "ConnectionRefused" in page

    client.post(reverse("admin:webhooks_webhookmessage_resend", args=[quote(message.pk)]))
    run_worker_once()

    [request] = receiver.requests
    assert request.headers["webhook-id"] == message.pk
    verify(secret, request)
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.DELIVERED


def test_recover_resends_failed_messages_since_the_chosen_time(account_admin, client, make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    old = WebhookMessageFactory(
        endpoint=endpoint, state=WebhookMessage.State.FAILED, created_at=timezone.now() - timedelta(days=3)
    )
    recent = WebhookMessageFactory(endpoint=endpoint, state=WebhookMessage.State.FAILED)
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    client.post(reverse("admin:webhooks_webhookendpoint_recover", args=[endpoint.pk]), {"since": since})
    run_worker_once()

    assert [r.headers["webhook-id"] for r in receiver.requests] == [recent.pk]
    old.refresh_from_db()
    assert old.state == WebhookMessage.State.FAILED


def test_reenable_resumes_a_disabled_endpoint(account_admin, client, make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False, disabled_reason="410 Gone")
    message = WebhookMessageFactory(endpoint=endpoint)
    run_worker_once()
    assert receiver.requests == []

    page = client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert "410 Gone" in page
    client.post(reverse("admin:webhooks_webhookendpoint_reenable", args=[endpoint.pk]))
    run_worker_once()

    assert [r.headers["webhook-id"] for r in receiver.requests] == [message.pk]
    endpoint.refresh_from_db()
    assert endpoint.is_active is True
    assert endpoint.disabled_reason == ""


def test_the_application_must_belong_to_the_company(account_admin, client, company):
    foreign_app = ApplicationFactory()
    response = client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {
            "company": company.pk,
            "application": foreign_app.pk,
            "url": "https://example.com/hook",
            "event_types": ["onboarding.started"],
        },
    )
    assert response.status_code == 200  # the form again, with an error
    assert not WebhookEndpoint.objects.exists()
