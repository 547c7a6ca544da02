"""POST .../query: every op, measure, interval and group, on PostgreSQL and on BigQuery, same answers.

The same rows are stored in PostgreSQL and exported to the BigQuery emulator by the real exporter
(consent-false SDK events are not exported, as in production); each shape of `SHAPES` must give
its hand-worked answer on both engines.
"""

import pytest

from analytics.query import query_run
from analytics.query.fields import SOURCES
from ingest.services.export import export_drain

from .query_data import SHAPES, dataset_create, f, q

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["postgres", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def engine(request, settings) -> str:
    settings.ANALYTICS_QUERY_ENGINE = request.param
    if request.param == "bigquery":
        request.getfixturevalue("bigquery")
    return request.param


@pytest.fixture
def data(engine, application):
    dataset_create(application)
    if engine == "bigquery":
        report = export_drain()
        assert (report.exported, report.dead) == (13, 0)  # 8 events, 5 consented SDK events
    return application


def run(api_client, app, query, **headers):
    return api_client.post(f"/api/v1/analytics/apps/{app.uuid}/query", query, format="json", **headers)


def test_every_shape_gives_the_worked_answer(api_client, member_key, engine, data):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    wrong = {}
    for name, (query, expected) in SHAPES.items():
        response = run(api_client, data, query)
        body = response.json()
        if response.status_code != 200:
            wrong[name] = (response.status_code, body)
            continue
        assert body["engine"] == engine
        if body["rows"] != expected:
            wrong[name] = body["rows"]
    assert wrong == {}


def test_columns_truncation_and_took_ms(api_client, member_key, engine, data):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    query, _ = SHAPES["group event, org"]

    body = run(api_client, data, {**query, "interval": "month", "limit": 2}).json()

    assert body["columns"] == ["bucket", "event", "customer_org_id", "value"]
    assert body["rows"] == [
        ["2026-10-01T00:00:00Z", "signup", "org_a", 1],
        ["2026-11-01T00:00:00Z", "page_view", "org_a", 2],
    ]
    assert body["truncated"] is True
    assert isinstance(body["took_ms"], int)


def test_csv(api_client, member_key, engine, data):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_key}")
    query, _ = SHAPES["group environment, nulls first"]

    response = run(api_client, data, query, HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode() == "environment,value\r\nproduction,4\r\n,1\r\nstaging,1\r\n"


@pytest.mark.bigquery
def test_every_field_groups_and_filters_alike_on_both_engines(bigquery, application):
    # Given the same rows in PostgreSQL and, through the exporter, in BigQuery
    dataset_create(application)
    export_drain()
    mismatched = {}
    for source in SOURCES.values():
        for name in [*source.fields, "properties.plan_tier", "properties.screen", "properties.nested"]:
            other = 0 if source.fields.get(name) and source.fields[name].kind == "number" else "zz"
            for body in (
                q(source=source.name, group_by=[name]),
                q(source=source.name, measure="users", interval="day", group_by=[name]),
                q(source=source.name, filters=[f(name, "is_not_set")]),
                q(source=source.name, measure="sessions", filters=[f(name, "not_in", [other])]),
            ):
                # When each engine answers the same query
                pg = query_run(app=application, query=body, engine="postgres")
                bq = query_run(app=application, query=body, engine="bigquery")
                # Then the tables are identical
                if (pg["columns"], pg["rows"]) != (bq["columns"], bq["rows"]):
                    mismatched[f"{source.name} {body}"] = (pg["rows"], bq["rows"])
    assert mismatched == {}


@pytest.mark.bigquery
def test_distinct_counts_per_bucket_match_bigquery_on_unaligned_ranges(bigquery, application):
    """PostgreSQL counts distinct values bucket by bucket (a series of ranges clipped to `from`/`to`);
    BigQuery in one pass. Ranges that start and end mid-bucket must give the same table."""
    dataset_create(application)
    export_drain()
    mismatched = {}
    answered = 0
    for interval in ("hour", "day", "week", "month"):
        for measure in ("users", "orgs", "sessions"):
            for start, end in (
                ("2026-10-26T00:00:00Z", "2026-12-01T00:00:00Z"),
                ("2026-10-28T13:30:00Z", "2026-11-11T07:15:00+02:00"),
            ):
                for group_by in ([], ["event"]):
                    body = q(measure=measure, interval=interval, group_by=group_by, **{"from": start, "to": end})
                    pg = query_run(app=application, query=body, engine="postgres")
                    bq = query_run(app=application, query=body, engine="bigquery")
                    answered += len(pg["rows"])
                    if pg["rows"] != bq["rows"]:
                        mismatched[(interval, measure, start, tuple(group_by))] = (pg["rows"], bq["rows"])
    assert mismatched == {}
    assert answered > 100  # the ranges hold events: the tables compared are not empty
