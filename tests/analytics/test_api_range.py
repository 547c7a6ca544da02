"""`range` on the read API: a preset of 7, 30 or 90 days, or a 400 naming it (never a silent 30 days)."""

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(api_client, member_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    return api_client


@pytest.mark.parametrize("endpoint", ["activity", "pages", "features", "organizations"])
def test_an_unknown_range_is_a_400_naming_it(reader, application, endpoint):
    response = reader.get(f"/api/v1/analytics/apps/{application.uuid}/{endpoint}", {"range": "30d"})

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "range"
    assert "30d" in response.json()["details"][0]["message"]


@pytest.mark.parametrize("days", [7, 30, 90])
def test_a_preset_range_is_that_many_days_ending_today(reader, application, days):
    body = reader.get(f"/api/v1/analytics/apps/{application.uuid}/activity", {"range": days}).json()

    today = timezone.now().date()
    assert len(body["series"]) == days
    assert body["series"][-1]["date"] == today.isoformat()


def test_range_and_from_together_is_a_400(reader, application):
    url = f"/api/v1/analytics/apps/{application.uuid}/activity"
    response = reader.get(url, {"range": 7, "from": "2026-01-01"})

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "range"
