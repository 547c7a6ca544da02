"""The revenue pages in Chromium against the real server: figures, the matrix's links, the upload flow, 390 px.

Any browser console error fails a test (conftest.page). Screenshots 10-13 are the README's.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from apps_registry.models import Membership
from revenue.services import import_run
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def world(pages_server: str):
    company = CompanyFactory(name="Acme Revenue")
    app = ApplicationFactory(company=company, name="Acme Web")
    admin = MembershipFactory(company=company, role=Membership.Role.ADMIN).user
    start = (datetime.now(UTC) - timedelta(days=200)).date().isoformat()
    subs = "external_org_id,product_code,mrr,currency,start_at\n" + "".join(
        f"{org},{product},{mrr},EUR,{start}\n"
        for org, product, mrr in [("acme", "pro", "1200"), ("globex", "team", "300"), ("initech", "pro", "90")]
    )
    import_run(app=app, kind="subscriptions", data=subs.encode())
    import_run(app=app, kind="organizations", data=b"external_org_id,display_name\nacme,Acme Inc\nglobex,Globex\n")
    OrganizationFactory(application=app, customer_org_id="acme", health_score=85, health_bucket="healthy")
    OrganizationFactory(application=app, customer_org_id="globex", health_score=25, health_bucket="at_risk")
    return pages_server, app, admin


def log_in(page: Page, base: str, user: object) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}])


def test_revenue_pages_and_the_matrix_links(page: Page, world, screenshots):
    base, app, admin = world
    log_in(page, base, admin)
    page.goto(f"{base}/app/{app.uuid}/revenue/")
    expect(page.locator("#mrr")).to_have_text("1,590.00")
    expect(page.locator("#top-orgs-table")).to_contain_text("Acme Inc")
    screenshots.take(page, "10-revenue")

    page.goto(f"{base}/app/{app.uuid}/revenue-health/")
    # median of 90, 300, 1200 = 300: acme (85, 1200) champion; globex (25, 300) revenue at risk
    champions = page.locator('[data-segment="champions"]')
    expect(champions).to_contain_text("1,200.00")
    screenshots.take(page, "11-revenue-health")
    page.locator('[data-segment="revenue_at_risk"]').click()
    expect(page.locator("#org-table tbody tr")).to_have_count(1)
    expect(page.locator("#org-table")).to_contain_text("Globex")

    page.goto(f"{base}/app/{app.uuid}/signals/")
    expect(page.locator("h1")).to_have_text("Signals")
    screenshots.take(page, "12-signals")


def test_upload_preview_confirm_at_390_px(page: Page, world, screenshots, tmp_path):
    base, app, admin = world
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, base, admin)
    page.goto(f"{base}/app/{app.uuid}/settings/organization-data/")
    csv_file = tmp_path / "orgs.csv"
    csv_file.write_text("external_org_id,display_name\ninitech,Initech\n")
    page.select_option("#kind", "organizations")
    page.set_input_files("#file", str(csv_file))
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-counts")).to_contain_text("1")
    screenshots.take(page, "13-organization-data")
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".messages")).to_contain_text("Imported 1 rows")
    # The new pages' content fits the screen (wide tables scroll inside their own box); the shared
    # header and navigation are the base stylesheet's business.
    for path in ("revenue/", "revenue-health/", "signals/", "settings/organization-data/"):
        page.goto(f"{base}/app/{app.uuid}/{path}")
        overflow = page.evaluate(
            "(() => { const m = document.querySelector('main'); return m.scrollWidth - m.clientWidth; })()"
        )
        assert overflow <= 0, (path, overflow)
