"""Isolation of every metric endpoint per role and per key; features written by owners and admins only."""

import pytest

from analytics.models import Feature
from analytics.services import personal_key_revoke
from apps_registry.models import Membership
from tests.factories import MembershipFactory, PersonalApiKeyFactory, UserFactory

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    "activity",
    "active-users",
    "pages",
    "pages/trend?path=/",
    "features",
    "organizations",
]


def url(app, endpoint: str) -> str:
    return f"/api/v1/analytics/apps/{app.uuid}/{endpoint}"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_role_of_the_company_reads(api_client, application, endpoint):
    for role in Membership.Role.values:
        api_client.force_login(MembershipFactory(company=application.company, role=role).user)
        assert api_client.get(url(application, endpoint)).status_code == 200, role


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_another_companys_app_answers_404_like_an_unknown_one(api_client, application, outsider, endpoint):
    api_client.force_login(outsider)
    response = api_client.get(url(application, endpoint))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_anonymous_is_401(api_client, application, endpoint):
    assert api_client.get(url(application, endpoint)).status_code == 401


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_personal_key_reads_as_its_user_until_revoked(api_client, application, member, endpoint):
    key = PersonalApiKeyFactory(user=member)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key.raw_key}"}
    assert api_client.get(url(application, endpoint), **auth).status_code == 200

    personal_key_revoke(key=key)
    assert api_client.get(url(application, endpoint), **auth).status_code == 401


def test_an_outsiders_key_cannot_read_our_app(api_client, application, outsider):
    key = PersonalApiKeyFactory(user=outsider)
    response = api_client.get(url(application, "activity"), HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    assert response.status_code == 404


def test_a_superuser_reads_any_app(api_client, application):
    api_client.force_login(UserFactory(is_superuser=True))
    assert api_client.get(url(application, "organizations")).status_code == 200


FEATURE = {"name": "reports", "events": ["report_run"], "path_prefixes": ["/reports"]}


@pytest.mark.parametrize("role", [Membership.Role.OWNER, Membership.Role.ADMIN])
def test_owners_and_admins_define_and_remove_features_by_key(api_client, application, role):
    key = PersonalApiKeyFactory(user=MembershipFactory(company=application.company, role=role).user)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key.raw_key}"}

    created = api_client.post(url(application, "features"), FEATURE, format="json", **auth)
    assert created.status_code == 201
    assert created.json() == FEATURE
    assert [f["name"] for f in api_client.get(url(application, "features"), **auth).json()["features"]] == ["reports"]

    again = api_client.post(url(application, "features"), FEATURE, format="json", **auth)
    assert again.status_code == 409

    assert api_client.delete(url(application, "features/reports"), **auth).status_code == 204
    assert api_client.delete(url(application, "features/reports"), **auth).status_code == 404
    assert not Feature.objects.exists()


def test_members_cannot_define_or_remove_features(api_client, application, member):
    Feature.objects.create(application=application, name="kept", events=["x"])
    api_client.force_login(member)

    assert api_client.post(url(application, "features"), FEATURE, format="json").status_code == 403
    assert api_client.delete(url(application, "features/kept")).status_code == 403
    assert Feature.objects.filter(name="kept").exists()


def test_outsiders_cannot_define_features_on_our_app(api_client, application, outsider):
    api_client.force_login(outsider)
    assert api_client.post(url(application, "features"), FEATURE, format="json").status_code == 404


def test_a_superuser_defines_features(api_client, application):
    api_client.force_login(UserFactory(is_superuser=True))
    assert api_client.post(url(application, "features"), FEATURE, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "empty"}, None),
        ({"name": "a/b", "events": ["x"]}, "name"),
        ({"events": ["x"]}, "name"),
    ],
)
def test_invalid_features_are_400(api_client, application, body, field):
    api_client.force_login(UserFactory(is_superuser=True))
    response = api_client.post(url(application, "features"), body, format="json")
    assert response.status_code == 400
    if field:
        assert response.json()["details"][0]["field"] == field


def test_the_endpoints_are_in_the_openapi_document(api_client):
    paths = api_client.get("/api/schema/", {"format": "json"}).json()["paths"]
    prefix = "/api/v1/analytics/apps/{app_uuid}/"
    for endpoint in [
        "activity",
        "active-users",
        "pages",
        "pages/trend",
        "features",
        "features/{name}",
        "organizations",
        "organizations/{customer_org_id}",
        "organizations/{customer_org_id}/signals/{signal}/dismiss",
    ]:
        assert prefix + endpoint in paths, endpoint
    assert "recency" in paths[prefix + "organizations"]["get"]["description"]


@pytest.mark.parametrize("endpoint", [*ENDPOINTS, "stream"])
def test_answers_are_never_kept_by_a_shared_cache(api_client, application, member_key, endpoint):
    """Customer data and its errors alike: `private, no-store`, as on the pages."""
    auth = {"HTTP_AUTHORIZATION": f"Bearer {member_key}"}
    assert api_client.get(url(application, endpoint), **auth)["Cache-Control"] == "private, no-store"
    assert api_client.get(url(application, endpoint))["Cache-Control"] == "private, no-store"  # the 401
    assert api_client.get("/api/v1/analytics/apps/", **auth)["Cache-Control"] == "private, no-store"
