"""Every metric of the read API against figures computed by hand on a small fixed data set.

The data set (UTC days in March 2026; 2026-03-02 is a Monday):

| # | org   | user | env     | path        | event       | session | day   | note                   |
|---|-------|------|---------|-------------|-------------|---------|-------|------------------------|
| 1 | acme  | u1   | prod    | /home       | page_view   | s1      | 03-04 |                        |
| 2 | acme  | u1   | prod    | /home       | page_view   | s1      | 03-04 |                        |
| 3 | acme  | u2   | staging | /reports    | report_run  | s2      | 03-04 |                        |
| 4 | beta  | u3   | prod    | /home       | page_view   | s3      | 03-03 |                        |
| 5 | beta  | u3   | prod    | (none)      | export_csv  | s3      | 03-03 |                        |
| 6 | acme  | u1   | prod    | /reports/x  | report_run  | s4      | 03-02 | late: received 03-05   |
| 7 | gamma | u4   | staging | /home       | page_view   | s5      | 02-27 | before the window      |
| 8 | acme  | u1   | prod    | /home       | page_view   | s6      | 03-09 | after the window       |

SDK (app_open on 03-04): k1 with consent (q1), an anonymous device with consent (q2), and k1
WITHOUT analytics consent (q3), which must count nowhere.
"""

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from analytics.fold import fold_drain
from analytics.models import Feature
from analytics.selectors import active_users_get, activity_get
from tests.factories import EventFactory, SdkEventFactory

pytestmark = pytest.mark.django_db

S = {name: uuid.uuid4() for name in ("s1", "s2", "s3", "s4", "s5", "s6", "q1", "q2", "q3")}
WEEK = {"from": "2026-03-02", "to": "2026-03-08"}


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00+00:00")


@pytest.fixture
def data(application):
    rows = [
        ("acme", "u1", "prod", "/home", "page_view", "s1", "03-04"),
        ("acme", "u1", "prod", "/home", "page_view", "s1", "03-04"),
        ("acme", "u2", "staging", "/reports", "report_run", "s2", "03-04"),
        ("beta", "u3", "prod", "/home", "page_view", "s3", "03-03"),
        ("beta", "u3", "prod", None, "export_csv", "s3", "03-03"),
        ("acme", "u1", "prod", "/reports/x", "report_run", "s4", "03-02"),
        ("gamma", "u4", "staging", "/home", "page_view", "s5", "02-27"),
        ("acme", "u1", "prod", "/home", "page_view", "s6", "03-09"),
    ]
    for org, user, env, path, event, session, day in rows:
        received = at("03-05", 23) if session == "s4" else at(day)
        EventFactory(
            application=application,
            customer_org_id=org,
            user_hash=user * 32,
            environment=env,
            path=path,
            event=event,
            session_id=S[session],
            occurred_at=at(day),
            received_at=received,
        )
    for user_id, session, consent in (("k1", "q1", True), (None, "q2", True), ("k1", "q3", False)):
        SdkEventFactory(
            application=application,
            user_id=user_id,
            session_id=S[session],
            consent_analytics=consent,
            occurred_at=at("03-04"),
        )
    Feature.objects.create(application=application, name="reports", path_prefixes=["/reports"])
    Feature.objects.create(application=application, name="export", events=["export_csv"])
    Feature.objects.create(application=application, name="views", events=["page_view"])
    Feature.objects.create(application=application, name="escaped", path_prefixes=["/h_me"])
    fold_drain()
    return application


@pytest.fixture
def reader(api_client, member):
    api_client.force_login(member)
    return api_client


def get(client, app, endpoint: str, **params) -> dict:
    response = client.get(f"/api/v1/analytics/apps/{app.uuid}/{endpoint}", params)
    assert response.status_code == 200, response.json()
    return response.json()


def day(d: str, events=0, users=0, orgs=0, sessions=0) -> dict:
    return {"date": f"2026-{d}", "events": events, "users": users, "orgs": orgs, "sessions": sessions}


def test_activity_per_day_with_distinct_totals_and_the_late_event_on_its_own_day(data, reader):
    body = get(reader, data, "activity", **WEEK)

    assert body["series"] == [
        day("03-02", 1, 1, 1, 1),  # the late event, received on 03-05
        day("03-03", 2, 1, 1, 1),
        day("03-04", 3, 2, 1, 2),
        day("03-05"),
        day("03-06"),
        day("03-07"),
        day("03-08"),
    ]
    assert body["totals"] == {"events": 6, "users": 3, "orgs": 2, "sessions": 4}


def test_activity_per_environment(data, reader):
    prod = get(reader, data, "activity", environment="prod", **WEEK)
    staging = get(reader, data, "activity", environment="staging", **WEEK)

    assert prod["totals"] == {"events": 5, "users": 2, "orgs": 2, "sessions": 3}
    assert prod["series"][2] == day("03-04", 2, 1, 1, 1)
    assert staging["totals"] == {"events": 1, "users": 1, "orgs": 1, "sessions": 1}


def test_activity_per_week_and_month_counts_distinct_within_each_bucket(data, reader):
    weeks = get(reader, data, "activity", interval="week", **{"from": "2026-02-27", "to": "2026-03-09"})
    months = get(reader, data, "activity", interval="month", **{"from": "2026-02-27", "to": "2026-03-09"})

    assert weeks["series"] == [day("02-27", 1, 1, 1, 1), day("03-02", 6, 3, 2, 4), day("03-09", 1, 1, 1, 1)]
    assert months["series"] == [day("02-27", 1, 1, 1, 1), day("03-01", 7, 3, 2, 5)]
    assert weeks["totals"] == months["totals"] == {"events": 8, "users": 4, "orgs": 3, "sessions": 6}


def test_sdk_activity_never_counts_unconsented_events(data, reader):
    body = get(reader, data, "activity", source="sdk_events", **WEEK)

    assert body["series"][2] == day("03-04", 2, 2, 0, 2)
    assert body["totals"] == {"events": 2, "users": 2, "orgs": 0, "sessions": 2}


def test_pages_most_viewed_first_with_distinct_users_and_orgs(data, reader):
    assert get(reader, data, "pages", **WEEK)["pages"] == [
        {"path": "/home", "views": 3, "users": 2, "orgs": 2},
        {"path": "/reports", "views": 1, "users": 1, "orgs": 1},
        {"path": "/reports/x", "views": 1, "users": 1, "orgs": 1},
    ]
    assert get(reader, data, "pages", environment="prod", limit=1, **WEEK)["pages"] == [
        {"path": "/home", "views": 3, "users": 2, "orgs": 2}
    ]


def test_page_trend(data, reader):
    body = get(reader, data, "pages/trend", path="/home", **{"from": "2026-03-02", "to": "2026-03-04"})

    assert body == {
        "path": "/home",
        "series": [
            {"date": "2026-03-02", "views": 0, "users": 0},
            {"date": "2026-03-03", "views": 1, "users": 1},
            {"date": "2026-03-04", "views": 2, "users": 1},
        ],
    }


def test_feature_adoption_applies_to_the_past_by_event_name_and_path_prefix(data, reader):
    features = {f["name"]: f for f in get(reader, data, "features", **WEEK)["features"]}

    def adoption(name: str) -> tuple:
        f = features[name]
        return f["orgs_adopted"], f["orgs_active"], f["adoption"], f["users"]

    assert adoption("reports") == (1, 2, 0.5, 2)  # /reports and /reports/x, both acme
    assert adoption("export") == (1, 2, 0.5, 1)
    assert adoption("views") == (2, 2, 1.0, 2)
    assert adoption("escaped") == (0, 2, 0.0, 0)  # `_` is literal in a prefix, not a wildcard


def test_organizations_every_org_ever_seen_with_window_figures(data, reader):
    body = get(reader, data, "organizations", **WEEK)

    figures = [
        (o["customer_org_id"], o["events"], o["users"], o["sessions"], o["first_seen"][:10], o["last_seen"][:10])
        for o in body["organizations"]
    ]
    assert figures == [
        ("acme", 4, 2, 3, "2026-03-02", "2026-03-09"),
        ("beta", 2, 1, 1, "2026-03-03", "2026-03-03"),
        ("gamma", 0, 0, 0, "2026-02-27", "2026-02-27"),  # idle in the window, still listed
    ]
    assert body["next_cursor"] is None
    assert (body["orgs_tracked"], body["over_limit"]) == (3, False)


def test_organizations_search_sort_and_cursor_paging(data, reader):
    first = get(reader, data, "organizations", sort="customer_org_id", limit=2, **WEEK)
    second = get(reader, data, "organizations", sort="customer_org_id", limit=2, cursor=first["next_cursor"], **WEEK)

    assert [o["customer_org_id"] for o in first["organizations"]] == ["acme", "beta"]
    assert [o["customer_org_id"] for o in second["organizations"]] == ["gamma"]
    assert second["next_cursor"] is None
    found = get(reader, data, "organizations", search="ET", **WEEK)["organizations"]
    assert [o["customer_org_id"] for o in found] == ["beta"]


def test_organization_detail(data, reader):
    body = get(reader, data, "organizations/acme", **{"from": "2026-03-02", "to": "2026-03-04"})

    assert body["series"] == [
        {"date": "2026-03-02", "events": 1, "users": 1, "sessions": 1},
        {"date": "2026-03-03", "events": 0, "users": 0, "sessions": 0},
        {"date": "2026-03-04", "events": 3, "users": 2, "sessions": 2},
    ]
    assert body["top_pages"] == [
        {"path": "/home", "views": 2, "users": 1},
        {"path": "/reports", "views": 1, "users": 1},
        {"path": "/reports/x", "views": 1, "users": 1},
    ]
    assert body["features_used"] == ["reports", "views"]
    assert (body["events"], body["users"], body["sessions"]) == (4, 2, 3)


def test_unknown_organization_is_404(data, reader):
    response = reader.get(f"/api/v1/analytics/apps/{data.uuid}/organizations/nobody")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_active_users_today(application):
    now = datetime.now(UTC)
    for days_ago, user in ((0, "a"), (0, "b"), (3, "c"), (20, "d"), (40, "e")):
        EventFactory(application=application, user_hash=user * 64, occurred_at=now - timedelta(days=days_ago))
    fold_drain()

    assert active_users_get(app=application, environment=None, source="events") == {"dau": 2, "wau": 3, "mau": 4}


def test_selectors_take_the_contract_keywords(data):
    """The pages (issue 12) call these exact keyword names."""
    body = activity_get(
        app=data,
        date_from=date(2026, 3, 2),
        date_to=date(2026, 3, 8),
        environment=None,
        interval="day",
        source="events",
    )
    assert body["totals"]["events"] == 6


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-09", "to": "2026-03-01"}, "from"),
        ({"from": "not-a-date"}, "from"),
        ({"interval": "year"}, "interval"),
        ({"source": "nope"}, "source"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(data, reader, params, field):
    response = reader.get(f"/api/v1/analytics/apps/{data.uuid}/activity", params)

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == field
