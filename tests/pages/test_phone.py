"""Every page at a phone's width (390 px, an iPhone 12 to 15) in the real browser against the real server.

A page passes when nothing makes the page itself wider than the screen (wide tables scroll inside
their panel), the collapsed sections open with a button and every section link is on screen, Log out
is on screen, and charts are drawn no wider than the screen. New pages: add them to `PAGES`.
"""

import pytest
from playwright.sync_api import Page, expect

from apps_registry.models import Membership
from tests.factories import MembershipFactory

from .test_browser import World, log_in, world  # noqa: F401 - `world` is the scenario fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WIDTH = 390
SECTIONS = ("Overview", "Pages", "Features", "Organizations", "Event stream", "Explorer")

# (screenshot name, URL suffix under /app/<uuid>/, has the sections navigation)
PAGES = [
    ("overview", "", True),
    ("pages", "pages/", True),
    ("page-trend", "pages/trend/?path=/dashboard", True),
    ("features", "features/", True),
    ("organizations", "organizations/", True),
    ("organization", "organizations/org_big/", True),
    ("stream", "stream/", True),
    ("explorer", "explorer/?measure=events&interval=day&g1=event", True),
]


def assert_fits(page: Page, name: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{name}: the page is {width} px wide at {WIDTH} px"


def assert_on_screen(page: Page, locator, what: str) -> None:
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0, f"{what} starts off-screen at x={box['x']}"
    assert box["x"] + box["width"] <= WIDTH, f"{what} ends off-screen at x={box['x'] + box['width']}"


@pytest.fixture
def phone(page: Page) -> Page:
    page.set_viewport_size({"width": WIDTH, "height": 844})
    return page


@pytest.mark.parametrize(("name", "suffix", "has_nav"), PAGES, ids=[p[0] for p in PAGES])
def test_page_is_usable_at_390_pixels(phone: Page, world: World, name: str, suffix: str, has_nav: bool):  # noqa: F811
    # Given a member on a phone
    log_in(phone, world.base, world.member)

    # When they open the page
    phone.goto(world.url(suffix))

    # Then nothing overflows the screen and Log out is on it
    assert_fits(phone, name)
    assert_on_screen(phone, phone.get_by_role("button", name="Log out"), "Log out")
    for canvas in phone.locator("canvas[data-chart]").all():
        phone.wait_for_function("c => c.dataset.drawn === '1'", arg=canvas.element_handle())
        box = canvas.bounding_box()
        assert box is not None
        assert box["width"] > 100, f"{name}: the chart collapsed to {box['width']} px"
        assert box["x"] + box["width"] <= WIDTH, f"{name}: the chart is wider than the screen"
    if not has_nav:
        return

    # And the sections are collapsed behind one button that opens them, all on screen
    nav = phone.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Explorer")).to_be_hidden()
    toggle = nav.get_by_role("button", name="Sections")
    assert_on_screen(phone, toggle, "the sections button")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    for section in SECTIONS:
        assert_on_screen(phone, nav.get_by_role("link", name=section, exact=True), f"the {section} link")
    assert_fits(phone, name)


def test_wide_tables_scroll_inside_their_panel_and_a_phone_screenshot(phone: Page, world: World, screenshots):  # noqa: F811
    log_in(phone, world.base, world.member)

    # The organizations table is wider than a phone: its panel scrolls, the page does not
    phone.goto(world.url("organizations/"))
    panel = phone.locator("section.panel", has=phone.locator("#org-table"))
    scroll = panel.evaluate("p => [p.scrollWidth, p.clientWidth]")
    assert scroll[0] > scroll[1], "the table fits anyway: this check needs a wider table"
    assert_fits(phone, "organizations")
    panel.evaluate("p => { p.scrollLeft = p.scrollWidth; }")
    assert panel.evaluate("p => p.scrollLeft") > 0
    screenshots.take(phone, "phone-organizations")

    # The overview on a phone, with the sections open (the README's screenshot)
    phone.goto(world.url())
    phone.wait_for_function("document.querySelector('canvas[data-chart]').dataset.drawn === '1'")
    screenshots.take(phone, "phone-overview")
    phone.get_by_role("button", name="Sections").click()
    screenshots.take(phone, "phone-sections")


@pytest.mark.parametrize("suffix", ["login/", "password/"])
def test_account_pages_fit_at_390_pixels(phone: Page, world: World, suffix: str):  # noqa: F811
    if suffix == "password/":
        log_in(phone, world.base, MembershipFactory(company=world.app.company, role=Membership.Role.MEMBER).user)
    phone.goto(f"{world.base}/app/{suffix}")
    assert_fits(phone, suffix)
    expect(phone.locator("main button[type=submit]").first).to_be_visible()
