"""The health pages as the server answers them: reasons and the first reason in the list, history,
dismissal with a reason, Settings → Health model (members read, owners/admins preview and save)."""

import pytest
from django.test import Client

from analytics.health import organizations_scan
from analytics.models import HealthModelChange, OrgSignal
from apps_registry.models import Membership
from tests.analytics import health_scenario as sc
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scanned(application):
    sc.build(application)
    organizations_scan(app=application, now=sc.NOW)
    return application


def _client(app, role) -> Client:
    client = Client()
    client.force_login(MembershipFactory(company=app.company, role=role).user)
    return client


def test_the_list_shows_each_orgs_first_reason(scanned):
    html = _client(scanned, Membership.Role.MEMBER).get(f"/app/{scanned.uuid}/organizations/?bucket=at_risk").content
    text = html.decode()

    assert 'data-org="drop75-0"' in text
    assert "events \u221275 % vs the previous 30 days (150 vs 600)" in text
    assert "no activity for 19 days" in text
    assert 'data-org="steady-0"' not in text


def test_the_org_page_shows_reasons_history_magnitude_and_dismissals(scanned):
    client = _client(scanned, Membership.Role.MEMBER)
    url = f"/app/{scanned.uuid}/organizations/drop75-0/"

    response = client.post(url, {"signal": "usage_drop", "reason": "Seasonal: school holidays"})
    assert response.status_code == 302
    text = client.get(url).content.decode()

    assert 'id="health-reasons"' in text
    assert 'data-reason="usage_drop"' in text
    assert 'id="health-history"' in text
    assert "Seasonal: school holidays" in text
    signal = OrgSignal.objects.get(application=scanned, customer_org_id="drop75-0", kind="usage_drop")
    assert signal.dismissed_at is not None
    growing = client.get(f"/app/{scanned.uuid}/organizations/growing-0/").content.decode()
    assert 'data-tone="good"' in growing
    assert "360 events vs 180" in growing


def test_members_see_the_model_and_cannot_change_it(scanned):
    client = _client(scanned, Membership.Role.MEMBER)
    url = f"/app/{scanned.uuid}/settings/health/"

    page = client.get(url).content.decode()
    response = client.post(url, {"action": "save", "drop_at_risk_pct": "55"})

    assert "<fieldset disabled>" in page
    assert 'id="backtest"' in page
    assert response.status_code == 403
    assert not HealthModelChange.objects.exists()


def test_an_admin_previews_then_saves_and_the_change_is_logged(scanned):
    client = _client(scanned, Membership.Role.ADMIN)
    url = f"/app/{scanned.uuid}/settings/health/"

    preview = client.post(url, {"action": "preview", "drop_at_risk_pct": "55"}).content.decode()
    assert "3 of 30 organizations would change bucket" in preview
    assert "watch→at_risk: 3" in preview
    assert not HealthModelChange.objects.exists()

    saved = client.post(url, {"action": "save", "drop_at_risk_pct": "55"})
    assert saved.status_code == 302
    log = client.get(url).content.decode()
    assert 'id="model-changes"' in log
    assert "drop_at_risk_pct" in log
    assert HealthModelChange.objects.get().after["drop_at_risk_pct"] == 55


def test_a_bad_value_names_the_field(scanned):
    client = _client(scanned, Membership.Role.OWNER)

    page = client.post(f"/app/{scanned.uuid}/settings/health/", {"action": "save", "watch_min": "90"})

    assert page.status_code == 200
    assert "watch_min: Must be below healthy_min." in page.content.decode()
    assert not HealthModelChange.objects.exists()
