"""Funnels and Retention in a real browser (Debian's Chromium through Playwright) against the real server.

SDK events for the paywall template and server events for retention are stored directly (the server
is a separate process and reads the committed rows); the pages must show the hand-counted figures.
Any browser console error fails the test (see `conftest.page`).
"""

import datetime as dt
import re
import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps_registry.models import Membership
from tests.factories import ApplicationFactory, CompanyFactory, EventFactory, MembershipFactory, SdkEventFactory

from .test_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def world(pages_server: str):
    company = CompanyFactory(name="Acme Mobile")
    app = ApplicationFactory(company=company, name="Acme iOS")
    member = MembershipFactory(company=company, role=Membership.Role.MEMBER).user
    start = timezone.now().replace(microsecond=0) - dt.timedelta(days=2)
    # Paywall: 4 devices view it, 3 start a purchase (1, 2 and 4 minutes later), 1 completes (after 10 minutes)
    for i in range(4):
        anon = uuid.UUID(int=i + 1)
        country = "US" if i < 3 else "DE"
        SdkEventFactory(application=app, event_name="paywall_view", anon_id=anon, user_id=None, country=country,
                        occurred_at=start)  # fmt: skip
        if i < 3:
            SdkEventFactory(application=app, event_name="purchase_started", anon_id=anon, user_id=None,
                            occurred_at=start + dt.timedelta(minutes=[1, 2, 4][i]))  # fmt: skip
        if i == 0:
            SdkEventFactory(application=app, event_name="purchase_completed", anon_id=anon, user_id=None,
                            occurred_at=start + dt.timedelta(minutes=11))  # fmt: skip
    # Retention: 3 users sign up two weeks ago (Monday), 2 come back the week after, 1 this week
    monday = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    monday -= dt.timedelta(days=monday.weekday())
    for n, returns in ((1, [1, 2]), (2, [1]), (3, [])):
        user = f"{n:064x}"
        EventFactory(application=app, event="signup", user_hash=user, occurred_at=monday - dt.timedelta(weeks=2))
        for week in returns:
            EventFactory(application=app, event="page_view", user_hash=user,
                         occurred_at=monday - dt.timedelta(weeks=2 - week) + dt.timedelta(minutes=1))  # fmt: skip
    return pages_server, app, member


def table(page: Page, selector: str) -> list[list[str]]:
    return page.locator(f"{selector} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )


def test_paywall_template_in_one_click_then_breakdown_and_dropoff(page: Page, world, screenshots):
    base, app, member = world
    log_in(page, base, member)
    page.goto(f"{base}/app/{app.uuid}/funnels/?range=7")

    page.get_by_role("link", name="Paywall to purchase").click()

    expect(page.locator("#funnel-table")).to_be_visible()
    assert [row[:4] for row in table(page, "#funnel-table")] == [
        ["1. paywall_view", "4", "100.0 %", "100.0 %"],
        ["2. purchase_started", "3", "75.0 %", "75.0 %"],
        ["3. purchase_completed", "1", "25.0 %", "33.3 %"],
    ]
    assert table(page, "#funnel-table")[1][4] == "2 min"  # median of 1, 2 and 4 minutes
    page.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(page, "20-funnels")

    # A breakdown by country, from the form; the query stays in the URL
    page.get_by_label("Breakdown (first step's field)").select_option("country")
    page.get_by_role("button", name="Run funnel").click()
    expect(page).to_have_url(re.compile(r"breakdown=country"))
    assert [row[:2] for row in table(page, "#funnel-breakdown")] == [["US", "3"], ["DE", "1"]]

    # Who dropped before completing: two devices, each linked to the stream
    page.locator(".dropoff-link").nth(1).click()
    expect(page.locator("#dropoff-table")).to_be_visible()
    assert page.locator(".stream-link").count() == 2
    screenshots.take(page, "21-funnel-dropoff")
    page.locator(".stream-link").first.click()
    expect(page).to_have_url(re.compile(r"/stream/\?.*user="))


def test_steps_are_added_and_removed(page: Page, world):
    base, app, member = world
    log_in(page, base, member)
    page.goto(f"{base}/app/{app.uuid}/funnels/?template=push")
    assert page.locator(".step-row").count() == 2

    page.get_by_role("button", name="Add a step").click()
    expect(page.locator(".step-row")).to_have_count(3)
    page.get_by_label("Step 3", exact=True).fill("purchase_completed")
    page.get_by_role("button", name="Remove step 1").click()

    expect(page.locator(".step-row")).to_have_count(2)
    assert page.get_by_label("Step 1", exact=True).input_value() == "push_tapped"


def test_retention_cohort_table_and_average_curve(page: Page, world, screenshots):
    base, app, member = world
    log_in(page, base, member)
    page.goto(f"{base}/app/{app.uuid}/retention/")

    page.get_by_label("Start event").fill("signup")
    page.get_by_label("Return event").fill("page_view")
    page.get_by_label("Periods").fill("3")
    page.get_by_role("button", name="Run retention").click()

    expect(page).to_have_url(re.compile(r"start=signup.*return=page_view"))
    rows = table(page, "#retention-table")
    assert rows[0][1:] == ["3", "66.7 %", "33.3 %", "0.0 %"]  # week 1: 2 of 3; week 2 (this week): 1 of 3
    assert rows[-1][0] == "Average"
    assert page.locator("#retention-table td.incomplete").count() == 2  # this week and next are not over
    assert page.locator("#retention-table td.shade-7").count() == 1
    page.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(page, "22-retention")


def test_an_unknown_range_is_a_visible_error(page: Page, world):
    base, app, member = world
    log_in(page, base, member)

    page.goto(f"{base}/app/{app.uuid}/?range=30d")

    expect(page.locator("#range-error")).to_contain_text("Unknown range `30d`")


def test_usable_at_390_pixels(page: Page, world, screenshots):
    base, app, member = world
    log_in(page, base, member)
    page.set_viewport_size({"width": 390, "height": 844})
    for suffix in ("funnels/?template=paywall&range=7", "retention/?start=signup&return=*&periods=3&run=1"):
        page.goto(f"{base}/app/{app.uuid}/{suffix}")
        # Charts resize on a ResizeObserver callback: give them a moment to settle at 390 px.
        page.wait_for_timeout(500)
        overflow = page.evaluate("document.querySelector('main').scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{suffix} overflows by {overflow}px at 390 px"
        if suffix.startswith("funnels"):
            screenshots.take(page, "23-funnels-390px")


def test_another_companys_member_gets_404(page: Page, world, console):
    base, app, _member = world
    other = CompanyFactory(name="Other Co")
    ApplicationFactory(company=other)
    log_in(page, base, MembershipFactory(company=other, role=Membership.Role.OWNER).user)
    console.allow("404")

    for suffix in ("funnels/", "retention/"):
        response = page.goto(f"{base}/app/{app.uuid}/{suffix}")
        assert response is not None
        assert response.status == 404
