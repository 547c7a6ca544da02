"""POST .../funnel, GET .../funnel/dropoff, POST .../retention: each semantic rule, hand-computed
(tests/analytics/sequence_data.py), on PostgreSQL and on the BigQuery emulator with identical answers."""

import datetime as dt
import statistics

import psycopg
import pytest
from django.db import connection

from analytics.query import funnel as funnel_module
from ingest.services.export import export_drain
from tests.factories import ApplicationFactory, CompanyFactory, EventFactory, MembershipFactory, PersonalApiKeyFactory

from .sequence_data import (
    T,
    funnel_events,
    funnel_query,
    retention_events,
    retention_query,
    user,
    week,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["postgres", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def engine(request, settings) -> str:
    settings.ANALYTICS_QUERY_ENGINE = request.param
    if request.param == "bigquery":
        request.getfixturevalue("bigquery")
    return request.param


@pytest.fixture
def reader(api_client, member_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    return api_client


def exported(engine):
    if engine == "bigquery":
        report = export_drain()
        assert report.dead == 0


def post(client, app, kind, body):
    return client.post(f"/api/v1/analytics/apps/{app.uuid}/{kind}", body, format="json")


def step(event, count, conversion, previous, median):
    return {
        "event": event,
        "count": count,
        "conversion": conversion,
        "conversion_from_previous": previous,
        "median_seconds": median,
    }


# --- Funnels -------------------------------------------------------------------------------------


def test_funnel_by_users(reader, application, engine):
    # Given histories for each rule: out of order (u2), equal times (u3), repeated attempts (u4, u7),
    # a step past the window (u5), a first step outside the range (u6)
    funnel_events(application)
    exported(engine)

    response = post(reader, application, "funnel", funnel_query())

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["engine"] == engine
    assert body["steps"] == [
        step("A", 6, 1.0, 1.0, None),  # u1 u2 u3 u4 u5 u7
        step("B", 5, 0.8333, 0.8333, 600.0),  # medians of 0, 60, 600, 1800, 3000
        step("C", 3, 0.5, 0.6, 60.0),  # u1 u3 u7: 600, 0, 60
    ]
    assert body["breakdown"] == []
    assert isinstance(body["took_ms"], int)


def test_funnel_by_orgs(reader, application, engine):
    # o1: u1's A at T and u2's B at T (equal times) then C: one org through all three steps
    funnel_events(application)
    exported(engine)

    body = post(reader, application, "funnel", funnel_query(count_by="orgs")).json()

    assert body["steps"] == [
        step("A", 4, 1.0, 1.0, None),
        step("B", 4, 1.0, 1.0, 30.0),  # o1 0, o2 0, o4 60, o3 3000
        step("C", 3, 0.75, 0.75, 60.0),  # o1 600, o2 0, o4 60
    ]


def test_funnel_breakdown_from_the_first_steps_row(reader, application, engine):
    funnel_events(application)
    exported(engine)

    body = post(reader, application, "funnel", funnel_query(breakdown="plan")).json()

    # groups by step-1 count; u4 is `free` (its reaching attempt's first row), not `enterprise`
    assert body["breakdown_by"] == "plan"
    assert body["breakdown"] == [
        {"value": "pro", "steps": [step("A", 3, 1.0, 1.0, None), step("B", 2, 0.6667, 0.6667, 330.0),
                                   step("C", 2, 0.6667, 1.0, 330.0)]},
        {"value": "free", "steps": [step("A", 2, 1.0, 1.0, None), step("B", 2, 1.0, 1.0, 900.0),
                                    step("C", 1, 0.5, 0.5, 0.0)]},
        {"value": None, "steps": [step("A", 1, 1.0, 1.0, None), step("B", 1, 1.0, 1.0, 3000.0),
                                  step("C", 0, 0.0, 0.0, None)]},
    ]  # fmt: skip


def test_funnel_breakdown_past_the_cap_is_other(reader, application, engine, monkeypatch):
    # Given a cap of one group (25 in production): the rest is one `other` group, medians recomputed
    monkeypatch.setattr(funnel_module, "MAX_GROUPS", 1)
    funnel_events(application)
    exported(engine)

    body = post(reader, application, "funnel", funnel_query(breakdown="plan")).json()

    assert [group["value"] for group in body["breakdown"]] == ["pro", "other"]
    assert body["breakdown"][1]["other"] is True
    assert body["breakdown"][1]["steps"] == [
        step("A", 3, 1.0, 1.0, None),  # u3 u4 u5
        step("B", 3, 1.0, 1.0, 1800.0),  # 0, 1800, 3000
        step("C", 1, 0.3333, 0.3333, 0.0),
    ]


def test_funnel_on_sdk_events_counts_user_id_else_anon_id(reader, application, engine):
    import uuid

    from tests.factories import SdkEventFactory

    anon = uuid.uuid4()
    for name, minutes, user_id in (
        ("paywall_view", 0, None),
        ("purchase_started", 1, None),
        ("purchase_completed", 2, None),
    ):
        SdkEventFactory(application=application, event_name=name, anon_id=anon, user_id=user_id,
                        occurred_at=T + dt.timedelta(minutes=minutes))  # fmt: skip
    SdkEventFactory(application=application, event_name="paywall_view", user_id="u-9", occurred_at=T)
    exported(engine)
    query = {
        "source": "sdk_events",
        "steps": [{"event": "paywall_view"}, {"event": "purchase_started"}, {"event": "purchase_completed"}],
        "from": T.isoformat(),
        "to": (T.replace(hour=23)).isoformat(),
    }

    body = post(reader, application, "funnel", query).json()

    assert [s["count"] for s in body["steps"]] == [2, 1, 1]
    assert [s["median_seconds"] for s in body["steps"]] == [None, 60.0, 60.0]


def test_funnel_step_filters_are_the_explorers(reader, application, engine):
    funnel_events(application)
    exported(engine)
    query = funnel_query()
    query["steps"][0]["filters"] = [{"field": "customer_org_id", "op": "in", "value": ["o1", "o2"]}]

    body = post(reader, application, "funnel", query).json()

    assert [s["count"] for s in body["steps"]] == [4, 3, 2]  # u1 u2 u3 u4 (not u5 of o3, u7 of o4)


def test_dropoff_lists_who_stopped(reader, application, engine):
    funnel_events(application)
    exported(engine)
    url = f"/api/v1/analytics/apps/{application.uuid}/funnel/dropoff"
    import json

    body = reader.get(url, {"query": json.dumps(funnel_query()), "step": 3}).json()

    assert [e["id"] for e in body["entities"]] == [user(4), user(5)]
    assert body["entities"][0]["first_step_at"] == "2026-11-02T12:00:00Z"
    assert body["truncated"] is False
    body = reader.get(url, {"query": json.dumps(funnel_query()), "step": 2}).json()
    assert [e["id"] for e in body["entities"]] == [user(2)]


def _reach(times: dict[str, list[int]], steps: list[str], window: int, k: int, prev: int, t1: int) -> int:
    """Exhaustively, the furthest step reachable from step k - 1 at `prev` (the issue's definition)."""
    if k == len(steps):
        return k
    options = [t for t in times.get(steps[k], []) if t >= prev and t - t1 <= window]
    return max((_reach(times, steps, window, k + 1, t, t1) for t in options), default=k)


def _greedy(times: dict[str, list[int]], steps: list[str], window: int, t1: int) -> list[int]:
    """One attempt's step times, each the earliest at or after the previous within the window."""
    chain = [t1]
    for name in steps[1:]:
        later = [t for t in times.get(name, []) if t >= chain[-1] and t - t1 <= window]
        if not later:
            break
        chain.append(min(later))
    return chain


def _expected_funnel(history: dict[str, list[tuple[str, int]]], steps: list[str], window: int, span: int):
    """(step counts, medians in seconds, {depth: entities}) by brute force over every attempt."""
    depths: dict[str, int] = {}
    gaps: list[list[int]] = [[] for _ in steps]
    for entity, rows in history.items():
        times: dict[str, list[int]] = {}
        for name, t in rows:
            times.setdefault(name, []).append(t)
        starts = sorted({t for t in times.get(steps[0], []) if 0 <= t < span})
        if not starts:
            continue
        depth = max(_reach(times, steps, window, 1, t1, t1) for t1 in starts)
        best = next(c for c in (_greedy(times, steps, window, t1) for t1 in starts) if len(c) == depth)
        depths[entity] = depth
        for k in range(1, depth):
            gaps[k].append(best[k] - best[k - 1])
    counts = [sum(1 for d in depths.values() if d > k) for k in range(len(steps))]
    medians = [None, *(statistics.median(g) if g else None for g in gaps[1:])]
    by_depth: dict[int, list[str]] = {}
    for entity, depth in sorted(depths.items()):
        by_depth.setdefault(depth, []).append(entity)
    return counts, medians, by_depth


@pytest.mark.parametrize("folded", [False, True], ids=["queued", "half-folded"])
@pytest.mark.parametrize("seed", [3, 8])
def test_funnels_on_random_histories_match_the_definition(reader, application, engine, seed, folded):
    """Random histories on a minute grid (equal times, repeated names, attempts past the window or
    the range), checked against a brute force over every attempt, by users and by orgs. On
    PostgreSQL the fast path answers (funnel_fast.py): from the raw rows still queued, or with half
    of the history folded into its narrow table and half still queued."""
    import json
    import random

    from analytics.fold import fold_drain
    from analytics.query.funnel import funnel_answer

    if folded and engine == "bigquery":
        pytest.skip("BigQuery reads the exported rows: folding changes nothing there")
    rnd = random.Random(seed)
    span, window = 180, 30  # minutes: the range [T, T + 3 h), a 30-minute window
    names = ["A", "B", "C"]
    histories: dict[str, dict[str, list[tuple[str, int]]]] = {"users": {}, "orgs": {}}
    for u in range(12):
        if folded and u == 6:
            fold_drain()  # users 0-5 (orgs o0-o3) folded, 6-11 queued: known orgs and new users
        for _ in range(rnd.randrange(2, 14)):
            name, minute = rnd.choice(names), rnd.randrange(-40, span + 40)
            EventFactory(
                application=application, event=name, user_hash=user(u), customer_org_id=f"o{u % 4}",
                occurred_at=T + dt.timedelta(minutes=minute),
            )  # fmt: skip
            histories["users"].setdefault(user(u), []).append((name, minute * 60))
            histories["orgs"].setdefault(f"o{u % 4}", []).append((name, minute * 60))
    exported(engine)
    for steps in (["A", "B", "C"], ["A", "B", "B", "A"]):
        for count_by in ("users", "orgs"):
            query = funnel_query(
                steps=[{"event": s} for s in steps], window_seconds=window * 60, count_by=count_by,
                to=(T + dt.timedelta(minutes=span)).isoformat(),
            )  # fmt: skip
            counts, medians, by_depth = _expected_funnel(histories[count_by], steps, window * 60, span * 60)

            body = post(reader, application, "funnel", query).json()

            if engine == "postgres":
                assert funnel_answer(app=application, query=query)[1] == "funnel_events"
            assert [s["count"] for s in body["steps"]] == counts, (steps, count_by)
            assert [s["median_seconds"] for s in body["steps"]] == medians, (steps, count_by)
            for k in range(2, len(steps) + 1):
                dropped = reader.get(
                    f"/api/v1/analytics/apps/{application.uuid}/funnel/dropoff",
                    {"query": json.dumps(query), "step": k},
                ).json()
                assert [e["id"] for e in dropped["entities"]] == by_depth.get(k - 1, []), (steps, count_by, k)


# --- Retention -----------------------------------------------------------------------------------


def cohort(start, size, retained, complete):
    return {
        "start": start.isoformat().replace("+00:00", "Z"),
        "size": size,
        "retained": retained,
        "fractions": [round(n / size, 4) for n in retained],
        "complete": complete,
    }


def test_retention_by_week(reader, application, engine):
    # Given cohorts three and two weeks ago; this week's period has not ended
    retention_events(application)
    exported(engine)

    response = post(reader, application, "retention", retention_query())

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["period"] == "week"
    assert body["engine"] == engine
    assert body["cohorts"] == [
        cohort(week(-3), 2, [2, 0, 1], [True, True, False]),  # u2's Sunday 23:59:59 is week -3
        cohort(week(-2), 2, [1, 1, 0], [True, False, False]),  # u3's earlier signup is outside the range
    ]
    assert body["average"] == [0.75, 0.0, None]  # complete periods only


def test_retention_any_event(reader, application, engine):
    retention_events(application)
    exported(engine)

    body = post(reader, application, "retention", retention_query(return_event="*")).json()

    assert [c["retained"] for c in body["cohorts"]] == [[2, 0, 1], [2, 1, 0]]  # u4's feature_used counts


def test_retention_by_orgs(reader, application, engine):
    retention_events(application)
    exported(engine)

    body = post(reader, application, "retention", retention_query(count_by="orgs")).json()

    assert body["cohorts"] == [
        cohort(week(-3), 1, [1, 0, 1], [True, True, False]),
        cohort(week(-2), 1, [1, 1, 0], [True, False, False]),
    ]


def test_retention_by_day_and_month(reader, application, engine):
    retention_events(application)
    exported(engine)

    days = post(reader, application, "retention", retention_query(period="day", periods=8)).json()
    months = post(reader, application, "retention", retention_query(period="month", periods=2)).json()

    # u1: signup Mon W-3, page_view Mon W-2: day 7
    first = days["cohorts"][0]
    assert first["start"] == week(-3).isoformat().replace("+00:00", "Z")
    assert (first["size"], first["retained"][6]) == (1, 1)
    assert sum(c["size"] for c in months["cohorts"]) == 4
    assert all(isinstance(c["complete"][0], bool) for c in months["cohorts"])


# --- Errors, timeout, tenants --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**funnel_query(), "steps": [{"event": "A"}]}, "steps"),
        ({**funnel_query(), "steps": [{"event": "A"}] * 11}, "steps"),
        ({**funnel_query(), "window_seconds": 59}, "window_seconds"),
        ({**funnel_query(), "window_seconds": 90 * 86400 + 1}, "window_seconds"),
        ({**funnel_query(), "count_by": "sessions"}, "count_by"),
        ({**funnel_query(), "source": "sdk_events", "count_by": "orgs"}, "count_by"),
        ({**funnel_query(), "to": "2028-01-01T00:00:00Z"}, "to"),
        ({**funnel_query(), "from": "yesterday"}, "from"),
        ({**funnel_query(), "breakdown": "nope"}, "breakdown"),
        (
            {
                **funnel_query(),
                "steps": [{"event": "A", "filters": [{"field": "path", "op": "zz", "value": 1}]}, {"event": "B"}],
            },
            "steps[0].filters[0].op",
        ),
        ({**funnel_query(), "steps": [{"event": "A"}, {"event": "*"}]}, "steps[1].event"),
        ({**funnel_query(), "steps": [{"event": "A"}, {"name": "B"}]}, "steps[1].name"),
        ({**funnel_query(), "extra": 1}, "extra"),
        ({**funnel_query(), "environment": 5}, "environment"),
        ([1, 2], ""),
    ],
)
def test_bad_funnel_is_400_naming_the_member(reader, application, body, where):
    response = post(reader, application, "funnel", body)

    assert response.status_code == 400
    assert where in [d["field"] for d in response.json()["details"]]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**retention_query(), "period": "year"}, "period"),
        ({**retention_query(), "periods": 53}, "periods"),
        ({**retention_query(), "periods": 0}, "periods"),
        ({**retention_query(), "start_event": ""}, "start_event.event"),
        ({k: v for k, v in retention_query().items() if k != "return_event"}, "return_event"),
        ({**retention_query(), "return_event": {"event": "x", "filters": "no"}}, "return_event.filters"),
        ({**retention_query(), "count_by": "orgs", "source": "sdk_events"}, "count_by"),
    ],
)
def test_bad_retention_is_400_naming_the_member(reader, application, body, where):
    response = post(reader, application, "retention", body)

    assert response.status_code == 400
    assert where in [d["field"] for d in response.json()["details"]]


@pytest.mark.parametrize(
    ("params", "where"),
    [({"step": 2}, "query"), ({"query": "{", "step": 2}, "query"), ({"step": 1}, "step"), ({"step": "x"}, "step"),
     ({"step": 4}, "step")],
)  # fmt: skip
def test_bad_dropoff_is_400_naming_the_member(reader, application, params, where):
    import json

    if where != "query":
        params = {"query": json.dumps(funnel_query()), **params}
    response = reader.get(f"/api/v1/analytics/apps/{application.uuid}/funnel/dropoff", params)

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == where


@pytest.mark.parametrize("kind", ["funnel", "retention", "dropoff"])
def test_past_the_timeout_is_504(reader, application, settings, kind):
    import json

    settings.ANALYTICS_QUERY_TIMEOUT = 0.3
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("LOCK TABLE ingest_event IN ACCESS EXCLUSIVE MODE")
        if kind == "dropoff":
            response = reader.get(
                f"/api/v1/analytics/apps/{application.uuid}/funnel/dropoff",
                {"query": json.dumps(funnel_query()), "step": 2},
            )
        else:
            response = post(reader, application, kind, funnel_query() if kind == "funnel" else retention_query())
        other.rollback()

    assert response.status_code == 504
    assert response.json()["error"] == "query_timeout"


@pytest.mark.bigquery
@pytest.mark.parametrize("kind", ["funnel", "retention"])
def test_past_the_timeout_on_bigquery_is_504(reader, application, settings, bigquery, kind):
    settings.ANALYTICS_QUERY_ENGINE = "bigquery"
    settings.ANALYTICS_QUERY_TIMEOUT = 0.000001

    response = post(reader, application, kind, funnel_query() if kind == "funnel" else retention_query())

    assert response.status_code == 504


def test_another_companys_app_is_404_and_its_events_never_count(api_client, application):
    import json

    # Given events in `application`, and a reader of another company whose own app has none
    funnel_events(application)
    retention_events(application)
    other_company = CompanyFactory()
    other_app = ApplicationFactory(company=other_company)
    key = PersonalApiKeyFactory(user=MembershipFactory(company=other_company).user).raw_key
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    EventFactory(application=other_app, event="A", occurred_at=T)

    # Then `application` is a 404 for every endpoint
    assert post(api_client, application, "funnel", funnel_query()).status_code == 404
    assert post(api_client, application, "retention", retention_query()).status_code == 404
    dropoff = f"/api/v1/analytics/apps/{application.uuid}/funnel/dropoff"
    assert api_client.get(dropoff, {"query": json.dumps(funnel_query()), "step": 2}).status_code == 404
    # And its own app sees only its own event
    body = post(api_client, other_app, "funnel", funnel_query()).json()
    assert [s["count"] for s in body["steps"]] == [1, 0, 0]
    body = post(api_client, other_app, "retention", retention_query()).json()
    assert body["cohorts"] == []


def test_without_credentials_is_401(api_client, application):
    assert post(api_client, application, "funnel", funnel_query()).status_code == 401
    assert post(api_client, application, "retention", retention_query()).status_code == 401


def test_week_helpers_agree_with_the_data():
    assert week(0).weekday() == 0


def test_breakdown_by_a_number_and_a_property_on_both_engines(reader, application, engine):
    import uuid

    from tests.factories import SdkEventFactory

    # Given three devices on two bundle versions, with a `screen` property on the first step
    for i, (bundle, screen) in enumerate(((1.5, "home"), (1.5, "paywall"), (2.0, None))):
        anon = uuid.UUID(int=i + 1)
        SdkEventFactory(
            application=application,
            event_name="paywall_view",
            anon_id=anon,
            user_id=None,
            bundle_version=bundle,
            properties={"screen": screen} if screen else {},
            occurred_at=T,
        )
        if i != 1:
            SdkEventFactory(application=application, event_name="purchase_started", anon_id=anon, user_id=None,
                            occurred_at=T + dt.timedelta(seconds=90))  # fmt: skip
    exported(engine)
    query = {"source": "sdk_events", "steps": [{"event": "paywall_view"}, {"event": "purchase_started"}],
             "from": T.isoformat(), "to": (T + dt.timedelta(hours=1)).isoformat()}  # fmt: skip

    by_bundle = post(reader, application, "funnel", {**query, "breakdown": "bundle_version"}).json()
    by_screen = post(reader, application, "funnel", {**query, "breakdown": "properties.screen"}).json()

    assert [(g["value"], [s["count"] for s in g["steps"]]) for g in by_bundle["breakdown"]] == [
        (1.5, [2, 1]),
        (2.0, [1, 1]),
    ]
    assert [(g["value"], [s["count"] for s in g["steps"]]) for g in by_screen["breakdown"]] == [
        (None, [1, 1]),
        ("home", [1, 1]),
        ("paywall", [1, 0]),
    ]


def test_every_client_value_is_bound_never_printed():
    from analytics.query.funnel import funnel_compile, funnel_parse
    from analytics.query.retention import retention_compile, retention_parse

    evil = "x'; DROP TABLE ingest_event; --"
    app = ApplicationFactory.build(pk=1)
    funnel = funnel_parse({
        **funnel_query(),
        "steps": [{"event": evil, "filters": [{"field": "path", "op": "contains", "value": evil}]}, {"event": evil}],
        "breakdown": "properties.a_b",
        "environment": evil[:30],
    })  # fmt: skip
    retention = retention_parse({**retention_query(), "start_event": evil, "return_event": {"event": evil}})
    for engine in ("postgres", "bigquery"):
        for compiled in (
            funnel_compile(app=app, funnel=funnel, engine=engine),
            retention_compile(app=app, retention=retention, engine=engine),
        ):
            assert "DROP" not in compiled.sql
            assert any(evil in str(p) for p in compiled.params)


def test_openapi_documents_the_new_operations(api_client):
    from openapi_spec_validator import validate

    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    validate(schema)
    paths = schema["paths"]
    funnel = paths["/api/v1/analytics/apps/{app_uuid}/funnel"]["post"]
    retention = paths["/api/v1/analytics/apps/{app_uuid}/retention"]["post"]
    dropoff = paths["/api/v1/analytics/apps/{app_uuid}/funnel/dropoff"]["get"]
    for operation in (funnel, retention, dropoff):
        assert {"200", "400", "401", "404", "504"} <= set(operation["responses"])
    events, sdk = funnel["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert events["properties"]["steps"]["maxItems"] == 10
    assert sdk["properties"]["count_by"]["enum"] == ["users", None]  # no orgs on SDK events
    query = next(p for p in dropoff["parameters"] if p["name"] == "query")
    assert "application/json" in query["content"]  # the funnel itself, as JSON
    assert {
        "/api/v1/analytics/apps/{app_uuid}/insights",
        "/api/v1/analytics/apps/{app_uuid}/insights/{insight_id}",
    } <= set(paths)
