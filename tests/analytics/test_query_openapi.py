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
    assert set(stream["responses"]) == {"200", "400", "401", "404", "405", "406", "503"}
    assert set(query["responses"]) == {"200", "400", "401", "403", "404", "405", "406", "415", "502", "503", "504"}
    assert set(query["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in stream["parameters"]} >= {
        "source",
        "limit",
        "before",
        "event",
        "customer_org_id",
        "environment",
        "user",
    }


def test_personal_key_and_session_are_the_ways_in(schema):
    query = schema["paths"]["/api/v1/analytics/apps/{app_uuid}/query"]["post"]

    assert {"PersonalApiKey": []} in query["security"]
    assert schema["components"]["securitySchemes"]["PersonalApiKey"]["scheme"] == "bearer"
