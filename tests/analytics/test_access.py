"""Who may read analytics: members of the app's company by session or personal key; nobody else."""

import pytest
from django.utils import timezone
from rest_framework.exceptions import NotFound

from analytics.models import PersonalApiKey
from analytics.selectors import application_readable_get
from tests.factories import ApplicationFactory, UserFactory

APPS_URL = "/api/v1/analytics/apps/"


def test_anonymous_gets_401(api_client, application):
    response = api_client.get(APPS_URL)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_member_by_session_sees_only_own_company_apps(api_client, application, member, outsider):
    api_client.force_login(member)
    response = api_client.get(APPS_URL)
    assert response.status_code == 200
    assert [a["uuid"] for a in response.json()["apps"]] == [str(application.uuid)]


def test_personal_key_acts_as_its_user(api_client, application, member_key):
    response = api_client.get(APPS_URL, HTTP_AUTHORIZATION=f"Bearer {member_key}")
    assert response.status_code == 200
    assert [a["uuid"] for a in response.json()["apps"]] == [str(application.uuid)]
    assert PersonalApiKey.objects.get().last_used_at is not None


@pytest.mark.parametrize("header", ["Bearer stp_00000000_wrong", "Bearer stp_"])
def test_unknown_key_gets_401(api_client, application, header):
    response = api_client.get(APPS_URL, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_revoked_key_gets_401(api_client, application, member_key):
    PersonalApiKey.objects.update(revoked_at=timezone.now())
    response = api_client.get(APPS_URL, HTTP_AUTHORIZATION=f"Bearer {member_key}")
    assert response.status_code == 401


def test_user_without_membership_sees_nothing(api_client, application):
    api_client.force_login(UserFactory(is_staff=False))
    assert api_client.get(APPS_URL).json() == {"apps": []}


def test_superuser_sees_every_app(api_client, application, outsider):
    api_client.force_login(UserFactory(is_superuser=True))
    assert len(api_client.get(APPS_URL).json()["apps"]) == 2


def test_another_companys_app_is_unknown(application, outsider):
    ApplicationFactory(company=application.company)
    with pytest.raises(NotFound):
        application_readable_get(user=outsider, app_uuid=application.uuid)


def test_an_unknown_format_suffix_is_a_404_not_a_500(api_client, application, member_key):
    response = api_client.get(APPS_URL + "?format=AAA", HTTP_AUTHORIZATION=f"Bearer {member_key}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
