"""The health pages in Chromium (real server, no console error allowed), at 1280 px and at 390 px.

The 30-org scenario of issue 19 (tests/analytics/health_scenario.py) is stored, folded and scanned;
an owner reads the reasons, dismisses a signal with a reason, previews and saves a model change.
"""

import re

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from analytics.health import organizations_scan
from apps_registry.models import Membership
from tests.analytics import health_scenario as sc
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def world(pages_server: str):
    app = ApplicationFactory(company=CompanyFactory(name="Acme Analytics"), name="Acme Web")
    sc.build(app)
    organizations_scan(app=app, now=sc.NOW)
    owner = MembershipFactory(company=app.company, role=Membership.Role.OWNER).user
    return pages_server, app, owner


def log_in(page: Page, base: str, user: object) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}])


def overflowing(page: Page, scope: str) -> list[str]:
    """Elements under `scope` reaching past the viewport (inside a scroll box is fine).

    The shared top bar, nav and the organization page's older panels are the responsive work of
    another change, so only what issue 19 adds is checked here.
    """
    return page.evaluate(
        """scope => Array.from(document.querySelectorAll(scope))
            .filter(e => !e.closest('.table-scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + Math.round(e.getBoundingClientRect().right))""",
        scope,
    )


def test_reasons_dismissal_preview_and_save(page: Page, world, screenshots):
    base, app, owner = world
    log_in(page, base, owner)

    # The list: at-risk orgs, each with its first reason
    page.goto(f"{base}/app/{app.uuid}/organizations/?bucket=at_risk")
    rows = page.locator("#org-table tbody tr")
    expect(rows).to_have_count(8)
    expect(page.locator('tr[data-org="drop75-0"] [data-first-reason]')).to_have_text(
        "events \u221275 % vs the previous 30 days (150 vs 600)"
    )
    screenshots.take(page, "08-organizations-health")

    # The organization: reasons worst first, the signal's magnitude, dismissal with a reason
    page.locator('tr[data-org="drop75-0"] a').first.click()
    expect(page.locator("#health-reasons li").first).to_contain_text("\u221275 %")
    expect(page.locator('#signals li[data-signal="usage_drop"]')).to_contain_text("150 events vs 600")
    expect(page.locator("#health-history")).to_contain_text("At risk")
    page.get_by_placeholder("Reason (optional)").fill("Seasonal: school holidays")
    page.get_by_role("button", name="Dismiss").click()
    expect(page.locator("#dismissals")).to_contain_text("Seasonal: school holidays")
    screenshots.take(page, "09-organization-health")

    # Settings → Health model: preview a tighter drop threshold, then save it
    page.locator("#settings-menu summary").click()
    page.get_by_role("link", name="Health model").click()
    expect(page.locator("#backtest")).to_be_visible()
    page.get_by_label("Drop meaning at risk (%)").fill("55")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-title")).to_have_text(re.compile(r"3 of 30 organizations would change bucket"))
    screenshots.take(page, "10-health-model-preview")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="saved")).to_be_visible()
    expect(page.locator("#model-changes")).to_contain_text("drop_at_risk_pct")


def test_the_health_pages_fit_390_px(page: Page, world, screenshots):
    base, app, owner = world
    log_in(page, base, owner)
    page.set_viewport_size({"width": 390, "height": 844})

    org_parts = (
        "section:has(#health-reasons) *, section:has(#signals) *, section:has(#health-history),"
        " section:has(#health-history) *"
    )
    for suffix, shot, scope in (
        ("settings/health/", "11-health-model-390", "main *"),
        ("organizations/silent-0/", "12-organization-health-390", org_parts),
    ):
        page.goto(f"{base}/app/{app.uuid}/{suffix}")
        # Until the shared layout is responsive (another change drops `body { min-width: 1000px }`),
        # lift that one rule so this checks what this page adds; once it is gone this is a no-op.
        page.evaluate("document.body.style.minWidth = '0'")  # CSSOM: allowed by the pages' CSP
        expect(page.locator("main h1")).to_be_visible()
        assert overflowing(page, scope) == [], suffix
        screenshots.take(page, shot)
    page.goto(f"{base}/app/{app.uuid}/organizations/silent-0/")
    page.get_by_placeholder("Reason (optional)").first.fill("Called them")
    page.get_by_role("button", name="Dismiss").first.click()
    expect(page.locator("#dismissals")).to_contain_text("Called them")
