"""The Funnels and Retention pages as the server answers them: the figures the API gives, the form in
the URL, templates, drop-off links to the stream, CSV, the error state, and tenant isolation."""

import csv
import io
import re

import pytest
from django.test import Client

from apps_registry.models import Membership
from tests.analytics.sequence_data import T, funnel_events, retention_events, user
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(application) -> Client:
    client = Client()
    client.force_login(MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user)
    return client


@pytest.fixture
def now_is_day_after(monkeypatch):
    """The page's 7-day range ends today: pin today to the day after the funnel data set (T + 1 day)."""
    import datetime as dt

    from django.utils import timezone

    fixed = T + dt.timedelta(days=1, hours=1)
    monkeypatch.setattr(timezone, "now", lambda: fixed)


def funnel_url(app, **params) -> str:
    from urllib.parse import urlencode

    base = {"from": "2026-11-02", "to": "2026-11-02", "s1": "A", "s2": "B", "s3": "C", "window": "3600", "run": "1"}
    return f"/app/{app.uuid}/funnels/?{urlencode({**base, **params})}"


def cells(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table id="{table_id}".*?</table>', html, re.S).group(0)
    body = table.split("<tbody>")[1]
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def test_funnel_page_shows_the_apis_figures(member_client, application, now_is_day_after):
    funnel_events(application)

    response = member_client.get(funnel_url(application))

    assert response.status_code == 200
    html = response.content.decode()
    assert cells(html, "funnel-table") == [
        ["1. A", "6", "100.0 %", "100.0 %", "\u2013", ""],
        ["2. B", "5", "83.3 %", "83.3 %", "10 min", "who dropped"],
        ["3. C", "3", "50.0 %", "60.0 %", "1 min", "who dropped"],
    ]
    assert 'data-chart="funnel-chart"' in html
    assert 'aria-current="page">Funnels</a>' in html


def test_funnel_page_breakdown_and_orgs(member_client, application, now_is_day_after):
    funnel_events(application)

    html = member_client.get(funnel_url(application, breakdown="plan", count_by="orgs")).content.decode()

    assert "By plan" in html
    assert cells(html, "funnel-table")[0][1] == "4"


def test_dropoff_page_links_each_entity_to_the_stream(member_client, application, now_is_day_after):
    funnel_events(application)
    html = member_client.get(funnel_url(application)).content.decode()
    dropoff = re.findall(r'href="([^"]+)" class="dropoff-link"', html)[1].replace("&amp;", "&")

    page = member_client.get(dropoff).content.decode()

    links = [link.replace("&amp;", "&") for link in re.findall(r'href="([^"]+)" class="stream-link"', page)]
    assert len(links) == 2  # u4 and u5 reached B but not C
    assert links[0].startswith(f"/app/{application.uuid}/stream/?")
    assert "from=2026-11-02&to=2026-11-02" in links[0]  # the same range
    assert f"user={user(4)}" in links[0]
    assert f"user={user(5)}" in links[1]


def test_sdk_templates_fill_the_steps(member_client, application):
    html = member_client.get(f"/app/{application.uuid}/funnels/").content.decode()
    templates = dict(re.findall(r'data-template="(\w+)" href="([^"]+)"', html))
    assert set(templates) == {"onboarding", "paywall", "push"}

    page = member_client.get(templates["onboarding"].replace("&amp;", "&")).content.decode()

    steps = re.findall(r'id="f-s\d+" name="s\d" value="([^"]*)"', page)
    assert steps == [
        "onboarding_flow_started",
        "onboarding_step_viewed",
        "onboarding_step_completed",
        "onboarding_flow_completed",
    ]
    assert '<option value="sdk_events" selected>' in page
    assert 'id="funnel-result"' in page  # run at once: one click


def test_steps_are_added_and_removed_in_the_url(member_client, application):
    added = member_client.get(funnel_url(application, add="1")).content.decode()
    removed = member_client.get(funnel_url(application, remove="2")).content.decode()

    assert len(re.findall(r'id="f-s\d+" name="s\d+" value=', added)) == 4
    assert re.findall(r'id="f-s\d+" name="s\d" value="([^"]*)"', removed) == ["A", "C"]


def test_a_refused_funnel_is_a_visible_error(member_client, application):
    html = member_client.get(funnel_url(application, window="5")).content.decode()

    assert "The funnel was refused" in html
    assert "window_seconds" in html


def test_funnel_csv(member_client, application, now_is_day_after):
    funnel_events(application)
    url = funnel_url(application, breakdown="plan").replace("/funnels/?", "/funnels.csv?")

    response = member_client.get(url)

    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["group", "step", "event", "count", "conversion", "conversion_from_previous", "median_seconds"]
    assert rows[1:4] == [
        ["", "1", "A", "6", "1.0", "1.0", ""],
        ["", "2", "B", "5", "0.8333", "0.8333", "600.0"],
        ["", "3", "C", "3", "0.5", "0.6", "60.0"],
    ]
    assert ["pro", "1", "A", "3", "1.0", "1.0", ""] in rows


def test_funnel_csv_neutralises_formulas(member_client, application, now_is_day_after):
    from tests.factories import EventFactory

    EventFactory(application=application, event="=HYPERLINK()", occurred_at=T)
    url = funnel_url(application, s1="=HYPERLINK()", s2="B", s3="C").replace("/funnels/?", "/funnels.csv?")

    rows = list(csv.reader(io.StringIO(member_client.get(url).content.decode())))

    assert rows[1][2] == "'=HYPERLINK()"


def test_retention_page_shades_cohorts_and_marks_incomplete(member_client, application):
    retention_events(application)
    url = f"/app/{application.uuid}/retention/?range=30&start=signup&return=page_view&period=week&periods=3&run=1"

    html = member_client.get(url).content.decode()

    assert 'id="retention-table"' in html
    assert "shade-10" in html  # week -3's cohort: 2 of 2 back in week 1
    assert "incomplete" in html
    assert 'data-chart="retention-chart"' in html


def test_retention_csv(member_client, application):
    retention_events(application)
    url = f"/app/{application.uuid}/retention.csv?range=30&start=signup&return=page_view&period=week&periods=3"

    rows = list(csv.reader(io.StringIO(member_client.get(url).content.decode())))

    assert rows[0] == ["cohort", "size", "week_1", "week_2", "week_3"]
    assert rows[-1][0] == "average"


def test_empty_and_refused_retention(member_client, application):
    base = f"/app/{application.uuid}/retention/?run=1&start=signup&return=*"

    empty = member_client.get(base).content.decode()
    refused = member_client.get(base + "&periods=99").content.decode()

    assert 'id="retention-empty"' in empty
    assert "The retention query was refused" in refused
    assert "periods" in refused


@pytest.mark.parametrize(
    "suffix",
    ["funnels/", "funnels.csv?s1=A&s2=B", "funnels/dropoff/?s1=A&s2=B&step=2", "retention/", "retention.csv?start=x"],
)
def test_another_companys_pages_are_404(application, outsider_client, suffix):
    assert outsider_client.get(f"/app/{application.uuid}/{suffix}").status_code == 404


def test_pages_need_a_login(client, application):
    response = client.get(f"/app/{application.uuid}/funnels/")
    assert response.status_code == 302


@pytest.mark.parametrize("page", ["", "funnels/", "retention/", "explorer/", "pages/", "stream/", "organizations/"])
def test_an_unknown_range_is_a_visible_error_on_every_page(member_client, application, page):
    html = member_client.get(f"/app/{application.uuid}/{page}?range=30d").content.decode()

    assert 'id="range-error"' in html
    assert "Unknown range `30d`" in html


@pytest.mark.parametrize(
    ("query", "message"),
    [("from=2026-13-01", "`from` must be a date"), ("from=2026-11-05&to=2026-11-01", "must not be after"),
     ("from=2024-01-01&to=2026-01-01", "at most 366 days")],
)  # fmt: skip
def test_a_bad_custom_range_is_a_visible_error(member_client, application, query, message):
    html = member_client.get(f"/app/{application.uuid}/?{query}").content.decode()

    assert 'id="range-error"' in html
    assert message in html


def test_a_custom_range_is_kept_in_the_links_and_forms(member_client, application):
    html = member_client.get(f"/app/{application.uuid}/funnels/?from=2026-10-01&to=2026-10-15").content.decode()

    assert "Oct 1, 2026 \u2013 Oct 15, 2026 (UTC)" in html
    assert 'name="from" value="2026-10-01"' in html  # the picker and the forms' hidden inputs
    assert f'href="/app/{application.uuid}/explorer/?from=2026-10-01&amp;to=2026-10-15"' in html  # the nav
    assert 'aria-current="true">' not in html.split('class="presets"')[1].split("</span>")[0]  # no preset is current


def test_overview_figures_show_their_change_against_the_range_before(member_client, application):
    import datetime as dt

    from analytics.fold import fold_drain
    from tests.factories import EventFactory

    # Given 3 events in Nov 11-20 and 2 in the 10 days before (Nov 1-10)
    for day in (11, 15, 20):
        EventFactory(application=application, occurred_at=dt.datetime(2026, 11, day, 12, tzinfo=dt.UTC))
    for day in (1, 10):
        EventFactory(application=application, occurred_at=dt.datetime(2026, 11, day, 12, tzinfo=dt.UTC))
    fold_drain(budget_seconds=30)

    html = member_client.get(f"/app/{application.uuid}/?from=2026-11-11&to=2026-11-20").content.decode()
    overlay = member_client.get(f"/app/{application.uuid}/?from=2026-11-11&to=2026-11-20&compare=1").content.decode()

    events_card = html.split('data-metric="events"')[1].split('data-metric="users"')[0]
    assert "+50.0 %" in events_card  # 3 against 2
    assert "vs the 10 days before (2)" in events_card
    assert "Events, previous period" in overlay
    assert "Events, previous period" not in html


def test_feature_adoption_page_lists_who_adopted_and_who_did_not(member_client, application):
    import datetime as dt

    from analytics.fold import fold_drain
    from analytics.models import Feature
    from tests.factories import EventFactory

    Feature.objects.create(application=application, name="Reports", events=["report_run"], path_prefixes=[])
    EventFactory(application=application, event="report_run", customer_org_id="org_a",
                 occurred_at=dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC))  # fmt: skip
    EventFactory(application=application, event="page_view", customer_org_id="org_c",
                 occurred_at=dt.datetime(2026, 11, 4, 12, tzinfo=dt.UTC))  # fmt: skip
    fold_drain(budget_seconds=30)
    features = member_client.get(f"/app/{application.uuid}/features/?from=2026-11-01&to=2026-11-15").content.decode()
    link = re.search(r'href="([^"]+)" class="adoption-link"', features).group(1).replace("&amp;", "&")

    html = member_client.get(link).content.decode()

    assert 'id="adoption-table"' in html
    assert f'href="/app/{application.uuid}/organizations/org_a/' in html.split('id="orgs-adopted"')[1].split("</ul>")[0]
    assert "org_c" in html.split('id="orgs-not-adopted"')[1].split("</ul>")[0]
