"""Smaller defects of the pages (issue 17, items 16 to 18), as the server renders them."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from analytics import fold
from apps_registry.models import Membership
from tests.factories import EventFactory, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(application) -> Client:
    client = Client()
    client.force_login(MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user)
    return client


def _first_row(html: str) -> str:
    match = re.search(r"<li data-key=.*?</li>", html, re.S)
    assert match, "no event row on the page"
    return match.group(0)


def _time_of(fragment: str, field: str) -> str:
    """The `datetime` attribute of the first <time> inside the element marked data-field=`field`."""
    match = re.search(rf'data-field="{field}"[^>]*>.*?<time datetime="([^"]+)"', fragment, re.S)
    assert match, f"no time in {field}: {fragment}"
    return match.group(1)


def test_latest_events_of_an_organization_show_event_time_and_receive_time_on_expand(application, member_client):
    # Given a backfilled event: it happened 20 days ago and was received just now
    happened = timezone.now() - timedelta(days=20)
    EventFactory(application=application, customer_org_id="org_backfill", event="invoice_paid", occurred_at=happened)
    fold.fold_drain(budget_seconds=10)

    # When the organization's page and the stream show it
    org_page = member_client.get(f"/app/{application.uuid}/organizations/org_backfill/").content.decode()
    stream_page = member_client.get(f"/app/{application.uuid}/stream/").content.decode()

    # Then both show when it happened (as "last seen" does), with the receive time in its details
    for html in (org_page, stream_page):
        row = _first_row(html)
        assert _time_of(row, "time")[:10] == happened.date().isoformat()
        times = re.search(r'data-field="times"[^>]*>(.*?)</p>', row, re.S)
        assert times, row
        received = re.findall(r'<time datetime="([^"]+)"', times.group(1))
        assert [r[:10] for r in received] == [happened.date().isoformat(), timezone.now().date().isoformat()]
    assert "Event time" in stream_page
    assert "last seen" in org_page


def _explorer(client: Client, application, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"measure": "events", "interval": "day", "g1": "event", **params}.items())
    return client.get(f"/app/{application.uuid}/explorer/?{query}").content.decode()


def test_explorer_chart_says_when_series_beyond_eight_are_left_off_and_offers_the_table_and_csv(
    application, member_client
):
    # Given twelve event names in the range
    for i in range(12):
        EventFactory.create_batch(12 - i, application=application, event=f"event_{i:02d}")

    # When the explorer charts events per day by event name
    html = _explorer(member_client, application)

    # Then the chart draws eight lines and the page says four were left off, where to find them
    note = re.search(r'<p class="chart-note" id="chart-note".*?</p>', html, re.S)
    assert note, "the page does not say that series were left off the chart"
    assert "8 largest of 12 series" in note.group(0)
    assert 'href="#explorer-table"' in note.group(0)
    assert f"/app/{application.uuid}/explorer.csv?" in note.group(0)
    assert html.count("<tr><td") == 12  # the table holds every series


def test_explorer_chart_with_every_series_shown_says_nothing(application, member_client):
    for name in ("a", "b", "c"):
        EventFactory(application=application, event=name)

    assert 'id="chart-note"' not in _explorer(member_client, application)


def test_pages_screen_names_what_its_count_counts(application, member_client):
    # Given one page view and one other event on the same path
    EventFactory(application=application, event="page_view", path="/reports")
    EventFactory(application=application, event="report_exported", path="/reports")
    fold.fold_drain(budget_seconds=10)

    # When the Pages screen lists the path
    html = member_client.get(f"/app/{application.uuid}/pages/").content.decode()

    # Then the column is named for what it counts (both events), and the page says so
    header = re.search(r'<table id="pages-table">.*?</thead>', html, re.S)
    assert header
    assert ">Events</th>" in header.group(0)
    assert ">Views</th>" not in header.group(0)
    row = re.search(r"<tr>\s*<td><a [^>]*>/reports</a></td>\s*<td class=\"num\">(\d+)</td>", html)
    assert row
    assert row.group(1) == "2"
    assert "not page views only" in html
