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


def test_feature_adoption_per_week_and_who_did_not_adopt(reader, application):
    import datetime as dt

    from analytics.fold import fold_drain
    from analytics.models import Feature
    from tests.factories import EventFactory

    # Given "Reports" (report_run): org_a uses it in the week of Nov 2 and of Nov 9, org_b in the week of
    # Nov 9; org_c is active but never uses it
    Feature.objects.create(application=application, name="Reports", events=["report_run"], path_prefixes=[])
    for org, day in (("org_a", 3), ("org_a", 10), ("org_b", 11)):
        EventFactory(application=application, event="report_run", customer_org_id=org,
                     occurred_at=dt.datetime(2026, 11, day, 12, tzinfo=dt.UTC))  # fmt: skip
    EventFactory(application=application, event="page_view", customer_org_id="org_c",
                 occurred_at=dt.datetime(2026, 11, 4, 12, tzinfo=dt.UTC))  # fmt: skip
    fold_drain(budget_seconds=30)

    url = f"/api/v1/analytics/apps/{application.uuid}/features/Reports/adoption"
    body = reader.get(url, {"from": "2026-11-02", "to": "2026-11-15"}).json()

    assert [(w["week"], w["orgs"], w["orgs_adopted_to_date"]) for w in body["weeks"]] == [
        ("2026-11-02", 1, 1),
        ("2026-11-09", 2, 2),
    ]
    assert body["orgs_adopted"] == ["org_a", "org_b"]
    assert body["orgs_active_not_adopted"] == ["org_c"]
    page = reader.get(f"/api/v1/analytics/apps/{application.uuid}/features/Nope/adoption")
    assert page.status_code == 404
