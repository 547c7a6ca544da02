"""POST .../query: 400s that name the member, the timeout, isolation, consent, and never a 500."""

import json

import psycopg
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.query import query_compile, query_parse
from apps_registry.models import Membership
from tests.factories import MembershipFactory, SdkEventFactory

from .query_data import FROM, TO, at, dataset_create, f, q, sdk

pytestmark = pytest.mark.django_db


def url(app) -> str:
    return f"/api/v1/analytics/apps/{app.uuid}/query"


@pytest.fixture
def reader(api_client, member_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    return api_client


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ({}, ["source", "measure", "from", "to"]),
        (q(source="logs"), ["source"]),
        (q(measure="revenue"), ["measure"]),
        (sdk(measure="orgs"), ["measure"]),
        (q(**{"from": "2026-11-01"}), ["from"]),
        (q(**{"from": "yesterday"}), ["from"]),
        (q(to=FROM), ["to"]),
        (q(**{"from": "2025-01-01T00:00:00Z"}), ["to"]),
        (q(interval="minute"), ["interval"]),
        (q(group_by=["event", "nope"]), ["group_by[1]"]),
        (q(group_by=["event", "customer_org_id", "path"]), ["group_by"]),
        (q(group_by=["event", "event"]), ["group_by[1]"]),
        (q(group_by="event"), ["group_by"]),
        (sdk(group_by=["customer_org_id"]), ["group_by[0]"]),
        (q(group_by=["properties.a-b"]), ["group_by[0]"]),
        (q(group_by=["properties."]), ["group_by[0]"]),
        (q(filters=[f("path", "like", "/x")]), ["filters[0].op"]),
        (q(filters=[f("event", "eq", "a"), f("bogus", "eq", "a")]), ["filters[1].field"]),
        (q(filters=[f("event", "eq")]), ["filters[0].value"]),
        (q(filters=[f("event", "eq", ["a"])]), ["filters[0].value"]),
        (q(filters=[f("event", "in", [])]), ["filters[0].value"]),
        (q(filters=[f("event", "in", ["a", {"b": 1}])]), ["filters[0].value[1]"]),
        (q(filters=[f("event", "is_set", "x")]), ["filters[0].value"]),
        (q(filters=[f("event", "eq", "a\x00b")]), ["filters[0].value"]),
        (q(filters=[f("event", "eq", 1.5)]), ["filters[0].value"]),
        (sdk(filters=[f("bundle_version", "prefix", "1")]), ["filters[0].op"]),
        (sdk(filters=[f("bundle_version", "eq", "1")]), ["filters[0].value"]),
        (q(filters=[{"field": "event", "op": "eq", "value": "a", "x": 1}]), ["filters[0].x"]),
        (q(filters=["event = 'a'"]), ["filters[0]"]),
        (q(filters={"field": "event"}), ["filters"]),
        (q(limit=0), ["limit"]),
        (q(limit=10_001), ["limit"]),
        (q(limit=True), ["limit"]),
        (q(extra=1), ["extra"]),
        ([], [""]),
    ],
)
def test_invalid_query_gets_400_naming_the_member(reader, application, query, fields):
    response = reader.post(url(application), query, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_failed"
    assert [d["field"] for d in body["details"]] == fields


def test_not_json_gets_400(reader, application):
    response = reader.post(url(application), b"{nope", content_type="application/json")

    assert response.status_code == 400


def test_values_are_parameters_not_sql(application):
    # A value that would end the string literal if pasted into SQL
    evil = "x' OR 1=1 --"
    query = query_parse(q(filters=[f("event", "eq", evil), f("properties.k", "in", [evil])]))

    for engine in ("postgres", "bigquery"):
        compiled = query_compile(app=application, query=query, engine=engine)
        assert evil not in compiled.sql
        assert evil in json.dumps(compiled.params, default=str)


def test_the_answer_with_no_events_is_zero_or_empty(reader, application):
    assert reader.post(url(application), q(), format="json").json()["rows"] == [[0]]
    assert reader.post(url(application), q(interval="day"), format="json").json()["rows"] == []


def test_unconsented_sdk_event_changes_no_result(reader, application):
    dataset_create(application)
    queries = [
        sdk(),
        sdk(measure="users", interval="day"),
        sdk(group_by=["platform", "country"]),
        sdk(filters=[f("user_id", "eq", "u9")]),
    ]
    before = [reader.post(url(application), body, format="json").json()["rows"] for body in queries]

    SdkEventFactory(
        application=application, consent_analytics=False, user_id="u9", occurred_at=at("2026-11-03T00:00:00Z")
    )

    assert [reader.post(url(application), body, format="json").json()["rows"] for body in queries] == before


@pytest.mark.parametrize("interval", ["hour", "day", "week"])
def test_the_planner_expects_a_few_buckets_not_one_per_row(application, interval):
    """The migration's statistics are on the compiler's exact bucket expressions (else PostgreSQL
    guesses one group per row and sorts millions of rows at 10 M events instead of hashing a few)."""
    from tests.factories import EventFactory

    for i in range(300):
        EventFactory(application=application, occurred_at=at(f"2026-11-0{1 + i % 3}T0{i % 3}:00:00Z"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ingest_event")
        sql, params = query_compile(app=application, query=query_parse(q(interval=interval)), engine="postgres")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
        # ANALYZE's row count outlives the test's rollback: leave the table's statistics empty again,
        # so other tests' plans are not made for 300 rows that are gone.
        cursor.execute("DELETE FROM ingest_event")
        cursor.execute("ANALYZE ingest_event")
    plan = plan if isinstance(plan, list) else json.loads(plan)

    def aggregates(node: dict) -> list[dict]:
        found = [node] if node["Node Type"] == "Aggregate" else []
        return found + [a for child in node.get("Plans", []) for a in aggregates(child)]

    estimates = [node["Plan Rows"] for node in aggregates(plan[0]["Plan"])]
    assert estimates
    assert max(estimates) <= 10  # 2 or 3 buckets in 300 rows; without the statistics: 200


def test_timeout_cancels_and_answers_504(reader, application, settings):
    # Given another session holding a lock the query must wait for (a stand-in for a slow query)
    settings.ANALYTICS_QUERY_TIMEOUT = 0.3
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("LOCK TABLE ingest_event IN ACCESS EXCLUSIVE MODE")

        # When a query runs
        response = reader.post(url(application), q(), format="json")

        other.rollback()

    # Then the server cancelled it at the limit and the client is told so
    assert response.status_code == 504
    assert response.json()["error"] == "query_timeout"
    assert "ANALYTICS_QUERY_TIMEOUT" in response.json()["message"]


@pytest.mark.bigquery
def test_timeout_on_bigquery_answers_504(reader, application, settings, bigquery):
    settings.ANALYTICS_QUERY_ENGINE = "bigquery"
    settings.ANALYTICS_QUERY_TIMEOUT = 0.000001

    response = reader.post(url(application), q(), format="json")

    assert response.status_code == 504


def test_bigquery_engine_without_project_is_503(reader, application, settings):
    settings.ANALYTICS_QUERY_ENGINE = "bigquery"
    settings.BIGQUERY_PROJECT = ""

    response = reader.post(url(application), q(), format="json")

    assert response.status_code == 503
    assert response.json()["error"] == "engine_unavailable"


@pytest.mark.parametrize("role", list(Membership.Role))
def test_every_role_of_the_company_may_query(api_client, application, role):
    api_client.force_login(MembershipFactory(company=application.company, role=role).user)

    assert api_client.post(url(application), q(), format="json").status_code == 200


def test_outsiders_and_anonymous_may_not(api_client, application, outsider):
    assert api_client.post(url(application), q(), format="json").status_code == 401
    api_client.force_login(outsider)
    assert api_client.post(url(application), q(), format="json").status_code == 404


def test_a_key_reads_only_its_users_company(api_client, application, outsider):
    from tests.factories import PersonalApiKeyFactory

    key = PersonalApiKeyFactory(user=outsider).raw_key
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert api_client.post(url(application), q(), format="json").status_code == 404


def test_errors_are_json_even_when_csv_is_asked_for(reader, application):
    response = reader.post(url(application), q(limit=0), format="json", HTTP_ACCEPT="text/csv")

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "limit"


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
)
FIELDS = ["event", "path", "user_id", "bundle_version", "properties.plan_tier", "properties.", "nope", "session_id"]
OPS = ["eq", "neq", "in", "not_in", "prefix", "contains", "is_set", "is_not_set", "like"]
filters = st.fixed_dictionaries(
    {"field": st.sampled_from(FIELDS) | json_values, "op": st.sampled_from(OPS) | json_values},
    optional={"value": json_values | st.lists(st.text() | st.integers(), max_size=3)},
)
times = st.sampled_from([FROM, TO, "2026-11-01T00:00:00+05:30", "0001-01-01T00:00:00+14:00", "2026-13-01"]) | st.text()
queries = st.fixed_dictionaries(
    {},
    optional={
        "source": st.sampled_from(["events", "sdk_events"]) | json_values,
        "measure": st.sampled_from(["events", "users", "orgs", "sessions"]) | json_values,
        "from": times,
        "to": times,
        "interval": st.sampled_from([None, "hour", "day", "week", "month"]) | json_values,
        "group_by": st.lists(st.sampled_from(FIELDS) | json_values, max_size=3) | json_values,
        "filters": st.lists(filters, max_size=3) | json_values,
        "limit": st.integers() | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(queries, queries, json_values))
def test_arbitrary_json_never_gets_a_500(reader, application, body):
    response = reader.post(url(application), json.dumps(body), content_type="application/json")

    assert response.status_code in (200, 400), response.content
