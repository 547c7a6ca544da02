"""Answers of the analytics API outside its happy paths: always the one JSON error shape, never a 500."""

import pytest

from apps_registry.models import Membership
from tests.factories import MembershipFactory, PersonalApiKeyFactory

pytestmark = pytest.mark.django_db


def test_options_with_format_csv_is_a_405_not_a_500(api_client, application, member_key):
    # Given the explorer, whose CSV renderer only knows result tables
    url = f"/api/v1/analytics/apps/{application.uuid}/query?format=csv"

    # When a client asks for OPTIONS as CSV (DRF answered its metadata through the CSV renderer: a 500)
    response = api_client.options(url, HTTP_AUTHORIZATION=f"Bearer {member_key}")

    # Then OPTIONS is not offered, in the error shape
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "OPTIONS" not in response["Allow"]


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_a_path_that_names_no_uuid_is_a_json_404(api_client, application, member_key, method):
    # Given an app_uuid that is not a uuid (no route matches), sent with or without a body
    response = getattr(api_client, method)(
        "/api/v1/analytics/apps/null,null/features/x", HTTP_AUTHORIZATION=f"Bearer {member_key}"
    )

    # Then it is a 404 in the one error shape, not Django's HTML page nor its CSRF page
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "not_found", "message": "Not found."}


def test_a_window_ending_in_the_first_days_of_year_1_is_answered_not_a_500(api_client, application, member_key):
    # Given `to` so early that the default window (29 days before it) would start before year 1
    url = f"/api/v1/analytics/apps/{application.uuid}/pages?to=0001-01-01"

    # When the pages are asked for (computing the default `from` overflowed: a 500)
    response = api_client.get(url, HTTP_AUTHORIZATION=f"Bearer {member_key}")

    # Then the window starts on the first day there is
    assert response.status_code == 200
    assert response.json() == {"pages": []}


@pytest.mark.parametrize(
    "body", [{"name": 0, "events": ["a"]}, {"name": "f", "events": [0]}, {"name": "f", "path_prefixes": [True]}]
)
def test_a_feature_is_defined_with_strings_only(api_client, application, body):
    # Given an admin's key (owners and admins may define features)
    admin = MembershipFactory(company=application.company, role=Membership.Role.ADMIN).user
    key = PersonalApiKeyFactory(user=admin).raw_key

    # When a number or a boolean stands where the document says string (DRF's CharField took it as text)
    response = api_client.post(
        f"/api/v1/analytics/apps/{application.uuid}/features", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    # Then it is refused, naming the member
    assert response.status_code == 400
    assert response.json()["error"] == "validation_failed"
