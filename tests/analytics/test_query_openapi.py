"""The stream and the explorer are in the OpenAPI document, with their answers and authentication."""

import pytest
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api_client) -> dict:
    response = api_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_document_is_valid_and_lists_both_endpoints(schema):
    validate(schema)

    stream = schema["paths"]["/api/v1/analytics/apps/{app_uuid}/stream"]["get"]
    query = schema["paths"]["/api/v1/analytics/apps/{app_uuid}/query"]["post"]
    # each view's own answers, and those every analytics operation shares (analytics/api/openapi.py)
    assert set(stream["responses"]) == {"200", "400", "401", "404", "405", "406", "503", "504"}
    assert set(query["responses"]) == {"200", "400", "401", "403", "404", "405", "406", "415", "502", "503", "504"}
    assert set(query["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    parameters = {p["name"]: p for p in stream["parameters"]}
    assert set(parameters) >= {"source", "limit", "before", "event", "user"}
    # `source` and the filters only `events` has are one exploded object: each branch is what that source takes
    by_source = {branch["title"]: branch for branch in parameters["source"]["schema"]["anyOf"]}
    assert parameters["source"]["style"] == "form"
    assert parameters["source"]["explode"] is True
    assert {"customer_org_id", "environment"} <= set(by_source["events"]["properties"])
    assert by_source["sdk_events"]["properties"]["environment"]["maxLength"] == 0  # empty is no filter; else 400


def test_query_body_is_the_query_language(schema):
    body = schema["paths"]["/api/v1/analytics/apps/{app_uuid}/query"]["post"]["requestBody"]["content"]
    events, sdk = body["application/json"]["schema"]["anyOf"]

    assert events["properties"]["source"]["enum"] == ["events"]
    assert events["properties"]["measure"]["enum"] == ["events", "users", "orgs", "sessions"]
    assert sdk["properties"]["measure"]["enum"] == ["events", "users", "sessions"]  # `orgs` is refused there
    assert events["properties"]["group_by"]["maxItems"] == 2
    assert events["properties"]["limit"]["minimum"] == 1
    assert events["properties"]["limit"]["maximum"] == 10_000
    assert events["properties"]["from"]["format"] == "date-time"
    ops = {
        op for shape in events["properties"]["filters"]["items"]["anyOf"] for op in shape["properties"]["op"]["enum"]
    }
    assert ops == {"eq", "neq", "in", "not_in", "prefix", "contains", "is_set", "is_not_set"}
    assert events["additionalProperties"] is False


def test_personal_key_and_session_are_the_ways_in(schema):
    query = schema["paths"]["/api/v1/analytics/apps/{app_uuid}/query"]["post"]

    assert {"PersonalApiKey": []} in query["security"]
    assert schema["components"]["securitySchemes"]["PersonalApiKey"]["scheme"] == "bearer"
