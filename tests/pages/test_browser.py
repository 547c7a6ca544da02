"""The analytics pages in a real browser (Debian's Chromium through Playwright) against the real server.

Events go in through the real `/v1/events` API of the running server, are folded into the rollups
by the analytics services, and the pages must show the hand-counted figures of `scenario.py`.
Any browser console error fails the test (see `conftest.page`).
"""

import re
import time
from dataclasses import dataclass

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from apps_registry.models import Application, Membership
from tests.factories import ApiSecretFactory, ApplicationFactory, CompanyFactory, EventFactory, MembershipFactory

from . import scenario
from .scenario import Sender

fold = pytest.importorskip("analytics.fold", reason="the analytics rollups (issue 10) are not installed")
health = pytest.importorskip("analytics.health", reason="the analytics health scan (issue 10) is not installed")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIVE_WITHIN_MS = 5_000


@dataclass
class World:
    base: str
    app: Application
    member: object
    sender: Sender

    def url(self, suffix: str = "") -> str:
        return f"{self.base}/app/{self.app.uuid}/{suffix}"


def fold_all(app: Application) -> None:
    """What the worker does after events are stored: fold them into the rollups, then score the orgs."""
    fold.fold_drain(budget_seconds=30)
    health.organizations_scan(app=app)


@pytest.fixture
def world(pages_server: str) -> World:
    from analytics.models import Feature

    company = CompanyFactory(name="Acme Analytics")
    app = ApplicationFactory(company=company, name="Acme Web")
    secret = ApiSecretFactory(application=app).secret
    member = MembershipFactory(company=company, role=Membership.Role.MEMBER).user
    Feature.objects.create(application=app, name="Reports", events=["report_exported"], path_prefixes=[])
    Feature.objects.create(application=app, name="Settings", events=[], path_prefixes=["/settings"])
    sender = Sender(base_url=pages_server, app_uuid=str(app.uuid), secret=secret)
    sender.send_scenario()
    fold_all(app)
    return World(base=pages_server, app=app, member=member, sender=sender)


def log_in(page: Page, base: str, user: object) -> None:
    """A session for `user`, as the login form would create it (the form itself has its own test)."""
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}])


def metric(page: Page, name: str) -> str:
    return page.locator(f'[data-metric="{name}"] .value').inner_text()


def test_log_in_with_the_form_and_see_the_overview(page: Page, world: World, screenshots):
    page.goto(f"{world.base}/")
    expect(page).to_have_url(re.compile(r"/app/login/"))
    screenshots.take(page, "00-login")

    page.get_by_label("Username").fill(world.member.username)
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Log in").click()

    # One application: its overview, all environments, the last 30 days
    expect(page).to_have_url(world.url())
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert metric(page, "events") == str(scenario.ALL_30D["events"])
    assert metric(page, "users") == str(scenario.ALL_30D["users"])
    assert metric(page, "orgs") == str(scenario.ALL_30D["orgs"])
    assert page.locator("#activity-table tbody tr").count() == 30
    page.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(page, "01-overview")

    # Log out: back at the login page, the pages closed again
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/app/login/"))
    page.goto(world.url())
    expect(page).to_have_url(re.compile(r"/app/login/\?next="))


def test_date_and_environment_filters_change_the_figures_and_stay_in_the_url(page: Page, world: World):
    log_in(page, world.base, world.member)
    page.goto(world.url())

    page.get_by_label("Environment").select_option("production")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"env=production"))
    assert metric(page, "events") == str(scenario.PRODUCTION_30D["events"])
    assert metric(page, "users") == str(scenario.PRODUCTION_30D["users"])

    page.get_by_role("link", name="7 days").click()
    expect(page).to_have_url(re.compile(r"range=7"))
    assert metric(page, "events") == str(scenario.PRODUCTION_7D["events"])
    assert metric(page, "orgs") == str(scenario.PRODUCTION_7D["orgs"])

    page.get_by_role("link", name="90 days").click()
    assert metric(page, "events") == str(scenario.PRODUCTION_90D_EVENTS)

    # The filters follow the navigation, so a bookmark of any view holds them
    page.get_by_role("link", name="Pages", exact=True).click()
    expect(page).to_have_url(re.compile(r"/pages/\?range=90&env=production"))
    page.goto(world.url("?env=staging"))
    assert metric(page, "events") == str(scenario.STAGING_30D["events"])


def test_pages_features_and_a_pages_trend(page: Page, world: World, screenshots):
    log_in(page, world.base, world.member)

    page.goto(world.url("pages/?env=production"))
    rows = page.locator("#pages-table tbody tr")
    shown = {
        rows.nth(i).locator("td").nth(0).inner_text(): tuple(
            int(rows.nth(i).locator("td").nth(c).inner_text()) for c in (1, 2, 3)
        )
        for i in range(rows.count())
    }
    assert shown == scenario.PAGES_PRODUCTION_30D
    screenshots.take(page, "02-pages")

    page.get_by_role("link", name="/dashboard").click()
    expect(page.get_by_role("heading", name="/dashboard")).to_be_visible()
    assert metric(page, "views") == "6"
    page.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(page, "03-page-trend")

    page.get_by_role("link", name="Features").click()
    table = page.locator("#features-table")
    expect(table.locator("tr", has_text="Reports")).to_contain_text("33.3 %")
    expect(table.locator("tr", has_text="Settings")).to_contain_text("66.7 %")
    screenshots.take(page, "04-features")


def test_organizations_sort_filter_open_and_dismiss_a_signal(page: Page, world: World, screenshots):
    log_in(page, world.base, world.member)
    page.goto(world.url("organizations/"))

    def org_ids() -> list[str]:
        return page.locator("#org-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.org)")

    # Busiest first by default; a click on the header sorts the other way, and the URL keeps it
    busiest = sorted(scenario.ORG_EVENTS_30D_ALL_ENVS, key=lambda o: (-scenario.ORG_EVENTS_30D_ALL_ENVS[o], o))
    assert org_ids() == busiest
    expect(page.locator("#org-table tr", has_text="org_big")).to_contain_text("9")
    screenshots.take(page, "05-organizations")
    page.locator('th a[data-sort="events"]').click()
    expect(page).to_have_url(re.compile(r"sort=events"))
    assert org_ids()[-1] == "org_big"

    page.get_by_label("Organization id").fill("org_s")
    page.get_by_role("button", name="Filter").click()
    assert org_ids() == ["org_stage", "org_small"]  # still by events, fewest first

    page.goto(world.url("organizations/?signal=usage_drop"))
    assert org_ids() == ["org_drop"]
    expect(page.locator("#org-table")).to_contain_text("Usage drop")

    # Open the organization, dismiss its signal
    page.get_by_role("link", name="org_drop").click()
    expect(page.get_by_role("heading", name=re.compile("org_drop"))).to_be_visible()
    expect(page.locator("#signals")).to_contain_text("Usage drop")
    assert page.locator("#org-events > li").count() >= 1
    page.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(page, "06-organization")
    page.locator('#signals li[data-signal="usage_drop"]').get_by_role("button", name="Dismiss").click()
    expect(page.get_by_role("status").filter(has_text="dismissed")).to_be_visible()
    expect(page.locator("#no-signals")).to_be_visible()

    page.goto(world.url("organizations/?signal=usage_drop"))
    assert org_ids() == []


def test_live_stream_shows_a_new_event_pauses_and_expands(page: Page, world: World, screenshots):
    log_in(page, world.base, world.member)
    page.goto(world.url("stream/"))
    rows = page.locator("#stream-list > li")
    expect(rows.first).to_be_visible()
    before = rows.count()

    # An event sent now appears within 5 s, without a reload
    world.sender.send(event="live_check", user_hash=scenario.user_hash("u9"), customer_org_id="org_live", path="/now")
    started = time.monotonic()
    expect(rows.first.locator('[data-field="event"]')).to_have_text("live_check", timeout=LIVE_WITHIN_MS)
    assert time.monotonic() - started < LIVE_WITHIN_MS / 1000
    assert rows.count() == before + 1
    screenshots.take(page, "07-stream")

    # Paused: nothing new shows up; resumed: it does
    page.get_by_role("button", name="Pause").click()
    world.sender.send(event="while_paused", user_hash=scenario.user_hash("u9"), customer_org_id="org_live")
    page.wait_for_timeout(2_500)
    expect(rows.first.locator('[data-field="event"]')).to_have_text("live_check")
    page.get_by_role("button", name="Resume").click()
    expect(rows.first.locator('[data-field="event"]')).to_have_text("while_paused", timeout=LIVE_WITHIN_MS)
    assert page.locator('#stream-list [data-field="event"]', has_text="while_paused").count() == 1

    # A row expands to the full event, with the keyboard
    rows.nth(1).locator("summary").focus()
    page.keyboard.press("Enter")
    expect(rows.nth(1).locator("dl")).to_contain_text("org_live")
    expect(rows.nth(1).locator("dl")).to_contain_text("/now")

    # Filtered by organization
    page.goto(world.url("stream/?org=org_drop"))
    orgs = set(page.locator('#stream-list [data-field="org"]').all_inner_texts())
    assert orgs == {"org_drop"}


def test_explorer_runs_a_query_from_the_url_and_downloads_csv(page: Page, world: World, screenshots, tmp_path):
    log_in(page, world.base, world.member)
    page.goto(world.url("explorer/?env=production"))

    page.get_by_label("Measure").select_option("events")
    page.get_by_label("Interval").select_option("")
    page.get_by_label("Field 1").select_option("event")
    page.get_by_role("button", name="Run query").click()

    # The URL holds the query; the table holds the counts
    expect(page).to_have_url(re.compile(r"measure=events.*g1=event"))
    cells = page.locator("#explorer-table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    assert {name: int(value) for name, value in cells} == scenario.EVENTS_BY_NAME_PRODUCTION_30D
    page.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(page, "08-explorer")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    path = tmp_path / "result.csv"
    download_info.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "event,value"
    assert sorted(lines[1:]) == ["page_view,9", "report_exported,1"]

    # An invalid query is refused with the member it names, not a crash
    page.goto(world.url("explorer/?source=sdk_events&measure=orgs&interval="))
    expect(page.locator("#query-error")).to_contain_text("measure")


def test_another_companys_member_gets_404(page: Page, world: World, console):
    other = CompanyFactory(name="Other Co")
    ApplicationFactory(company=other)
    outsider = MembershipFactory(company=other, role=Membership.Role.OWNER).user
    log_in(page, world.base, outsider)
    console.allow("404")

    response = page.goto(world.url())

    assert response is not None
    assert response.status == 404
    assert "Acme" not in page.content()


def test_empty_state_shows_how_to_send_a_first_event(page: Page, pages_server: str, screenshots):
    company = CompanyFactory(name="Newcomer")
    app = ApplicationFactory(company=company, name="Fresh app")
    user = MembershipFactory(company=company, role=Membership.Role.OWNER).user
    log_in(page, pages_server, user)

    page.goto(f"{pages_server}/app/{app.uuid}/")

    empty = page.locator(".empty-state")
    expect(empty).to_contain_text("/v1/events")
    expect(empty).to_contain_text(str(app.uuid))
    expect(empty).to_contain_text("openssl dgst -sha256 -hmac")
    screenshots.take(page, "09-empty-state")


def test_layout_holds_at_1024_pixels_and_is_keyboard_usable(page: Page, world: World):
    log_in(page, world.base, world.member)
    page.set_viewport_size({"width": 1024, "height": 768})
    for suffix in ("", "pages/", "features/", "organizations/", "stream/", "explorer/"):
        page.goto(world.url(suffix))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{suffix or 'overview'} overflows by {overflow}px at 1024 px"

    # The first Tab reaches the skip link, which jumps to the content
    page.goto(world.url())
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    # Every section is a link reachable by keyboard
    page.get_by_role("link", name="Organizations").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/organizations/"))


def test_app_picker_and_settings_links_to_the_admin(page: Page, world: World):
    second = ApplicationFactory(company=world.app.company, name="Acme Mobile")
    log_in(page, world.base, world.member)
    page.goto(world.url("?range=7"))

    # The picker opens with the keyboard and keeps the filters
    page.locator("#app-picker summary").focus()
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Acme Analytics · Acme Mobile").click()
    expect(page).to_have_url(f"{world.base}/app/{second.uuid}/?range=7")

    # Settings live in the admin (for staff members): the application's webhooks and credentials
    page.locator("#settings-menu summary").click()
    webhooks = page.get_by_role("link", name="Webhooks")
    expect(webhooks).to_have_attribute("href", re.compile(rf"application__id__exact={second.pk}"))
    page.keyboard.press("Escape")
    expect(webhooks).to_be_hidden()


def test_an_org_id_that_looks_like_a_path_opens_its_own_page(page: Page, pages_server: str):
    # Given orgs whose ids a client chose to look like paths out of the app (issue 18, item 11)
    company = CompanyFactory(name="Traversal Co")
    app = ApplicationFactory(company=company, name="Paths")
    user = MembershipFactory(company=company, role=Membership.Role.MEMBER).user
    for org in ("../../../admin/", ".."):
        EventFactory(application=app, customer_org_id=org)
    fold_all(app)
    log_in(page, pages_server, user)

    for org in ("../../../admin/", ".."):
        # When the member clicks the org in the organizations table
        page.goto(f"{pages_server}/app/{app.uuid}/organizations/")
        page.locator("#org-table tbody tr", has=page.locator(f'a:text-is("{org}")')).get_by_role("link").click()

        # Then the browser stays in the app, on that org's page (through the real server, granian)
        expect(page.locator("h1")).to_contain_text(org)
        assert page.url.startswith(f"{pages_server}/app/{app.uuid}/organization")
