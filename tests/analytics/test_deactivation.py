"""What deactivation means for analytics (README): a deactivated company is closed to its members (404,
as another company's app); a deactivated application stays readable but read-only (403
`application_inactive` on every write, superusers included), through the API and the pages."""

import pytest
from django.test import Client
from django.utils import timezone

from analytics.fold import fold_drain
from analytics.models import Feature, OrgSignal
from apps_registry.models import Membership
from tests.factories import EventFactory, MembershipFactory, PersonalApiKeyFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(application):
    return MembershipFactory(company=application.company, role=Membership.Role.OWNER).user


@pytest.fixture
def signal(application):
    EventFactory(application=application, customer_org_id="acme")
    fold_drain()
    return OrgSignal.objects.create(
        application=application, customer_org_id="acme", kind="usage_drop", active_since=timezone.now()
    )


def api(application, path: str = "") -> str:
    return f"/api/v1/analytics/apps/{application.uuid}/{path}"


def test_a_deactivated_company_is_closed_to_its_members(api_client, application, owner):
    key = PersonalApiKeyFactory(user=owner).raw_key
    application.company.is_active = False
    application.company.save()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    assert api_client.get(api(application, "activity"), **auth).status_code == 404
    assert api_client.get(api(application, "organizations"), **auth).status_code == 404
    assert (
        api_client.post(api(application, "features"), {"name": "f", "events": ["e"]}, format="json", **auth).status_code
        == 404
    )
    assert api_client.get("/api/v1/analytics/apps/", **auth).json()["apps"] == []
    client = Client()
    client.force_login(owner)
    assert client.get(f"/app/{application.uuid}/").status_code == 404
    assert not Feature.objects.exists()


def test_support_still_reads_a_deactivated_company_but_cannot_write(api_client, application):
    application.company.is_active = False
    application.company.save()
    api_client.force_login(UserFactory(is_superuser=True, is_staff=True))

    assert api_client.get(api(application, "activity")).status_code == 200
    response = api_client.post(api(application, "features"), {"name": "f", "events": ["e"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "application_inactive"


def test_a_deactivated_application_is_readable_but_read_only(api_client, application, owner, signal):
    Feature.objects.create(application=application, name="kept", events=["e"])
    application.is_active = False
    application.save()
    api_client.force_login(owner)

    # Reads answer: the history stays the customer's
    assert api_client.get(api(application, "activity")).status_code == 200
    assert api_client.get(api(application, "features")).status_code == 200
    assert api_client.get(api(application, "organizations/acme")).status_code == 200

    # Writes do not, whoever asks
    for response in (
        api_client.post(api(application, "features"), {"name": "f", "events": ["e"]}, format="json"),
        api_client.delete(api(application, "features/kept")),
        api_client.post(api(application, "organizations/acme/signals/usage_drop/dismiss")),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "application_inactive"
    assert list(Feature.objects.values_list("name", flat=True)) == ["kept"]
    signal.refresh_from_db()
    assert signal.dismissed_at is None


def test_a_deactivated_application_page_cannot_dismiss_a_signal(application, owner, signal):
    application.is_active = False
    application.save()
    client = Client()
    client.force_login(owner)

    page = client.get(f"/app/{application.uuid}/organizations/acme/")
    response = client.post(f"/app/{application.uuid}/organizations/acme/", {"signal": "usage_drop"}, follow=True)

    assert page.status_code == 200
    assert "deactivated" in response.content.decode()
    signal.refresh_from_db()
    assert signal.dismissed_at is None
