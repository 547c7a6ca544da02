"""Answers of the analytics API outside its happy paths: always the one JSON error shape, never a 500."""

import base64
import hashlib
import hmac
import logging

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


DEEP = b"[" * 990 + b"]" * 990


@pytest.mark.parametrize("endpoint", ["query", "features"])
def test_a_body_nested_990_levels_is_the_400_ingest_answers(api_client, application, endpoint, api_secret):
    # Given an owner (features may be defined) and a body nested ~990 levels (DRF's decoder recursed: a 500)
    owner = MembershipFactory(company=application.company, role=Membership.Role.OWNER).user
    key = PersonalApiKeyFactory(user=owner).raw_key

    response = api_client.post(
        f"/api/v1/analytics/apps/{application.uuid}/{endpoint}",
        DEEP,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    # Then it is the same 400 as ingest's answer to the same body
    signature = hmac.new(api_secret.encode(), DEEP, hashlib.sha256).hexdigest()
    ingest = api_client.post(
        "/v1/events",
        DEEP,
        content_type="application/json",
        HTTP_X_APP_UUID=str(application.uuid),
        HTTP_X_SIGNATURE=signature,
    )
    assert response.status_code == 400
    assert ingest.status_code == 400
    assert response.json() == ingest.json()
    assert response.json()["error"] == "invalid_json"


def test_an_oversized_cursor_offset_is_a_400_naming_the_cursor(api_client, application, member_key, caplog):
    cursor = base64.urlsafe_b64encode(b"o:" + b"9" * 30).decode()

    with caplog.at_level(logging.ERROR):
        response = api_client.get(
            f"/api/v1/analytics/apps/{application.uuid}/organizations",
            {"cursor": cursor},
            HTTP_AUTHORIZATION=f"Bearer {member_key}",
        )

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "cursor"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("organizations/acme%00", 400, "customer_org_id"),
        ("organizations/acme%00/signals/usage_drop/dismiss", 404, None),
        ("pages/trend?path=/a%00", 400, "path"),
        ("stream?customer_org_id=a%00", 400, "customer_org_id"),
    ],
)
def test_a_nul_in_client_text_is_a_client_error_not_an_outage(
    api_client, application, member_key, caplog, path, status, field
):
    method = api_client.post if path.endswith("dismiss") else api_client.get
    with caplog.at_level(logging.ERROR):
        response = method(
            f"/api/v1/analytics/apps/{application.uuid}/{path}", HTTP_AUTHORIZATION=f"Bearer {member_key}"
        )

    assert response.status_code == status, response.content
    if field:
        assert response.json()["details"][0]["field"] == field
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_deleting_a_feature_named_with_a_nul_is_a_404(api_client, application):
    owner = MembershipFactory(company=application.company, role=Membership.Role.OWNER).user
    key = PersonalApiKeyFactory(user=owner).raw_key

    response = api_client.delete(
        f"/api/v1/analytics/apps/{application.uuid}/features/a%00b", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 404
