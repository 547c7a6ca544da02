"""`/api/docs/` in a real browser with no internet: Swagger UI comes from this project, not a CDN."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

pytestmark = pytest.mark.slow

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def test_api_docs_render_with_every_non_loopback_request_blocked(page: Page, pages_server: str, console):
    # Given a browser that can reach this machine only (every other host is refused, as offline)
    blocked: list[str] = []

    def offline(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname not in LOOPBACK:
            blocked.append(url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/*", offline)
    console.allow("ERR_INTERNET_DISCONNECTED")  # reported below, with the URLs, if it happens

    # When it opens the API docs
    page.goto(f"{pages_server}/api/docs/")

    # Then Swagger UI draws the API from our schema, having asked nothing of another host
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("SaaSTracker Ingest API")
    expect(page.locator(".opblock-summary-path", has_text="/v1/events").first).to_be_visible()
    assert blocked == [], f"the docs asked for files beyond this machine: {blocked}"
