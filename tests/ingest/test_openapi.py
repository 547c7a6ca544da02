"""The OpenAPI document is generated from the code, is valid OpenAPI 3, and tells the truth.

Each status code listed for an endpoint is one the endpoint really answers; the tests next to
each view (test_sdk_events.py, test_sdk_identify.py, test_health.py, test_v1_events.py) produce
every one of them.
"""

import re

import pytest
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db

EXPECTED = {
    ("/api/v1/ingest/events", "post"): {"200", "400", "401", "405", "413", "415", "429", "503"},
    ("/api/v1/ingest/identify", "post"): {"200", "400", "401", "405", "413", "415", "429", "503"},
    ("/api/v1/ingest/health", "get"): {"200", "405", "503"},
    ("/v1/events", "post"): {"202", "400", "401", "404", "405", "413", "415", "429", "503"},
}


@pytest.fixture
def schema(api_client) -> dict:
    response = api_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")

    validate(schema)  # raises with the offending path when the document is not valid


@pytest.mark.parametrize(("path", "method"), list(EXPECTED))
def test_every_ingest_endpoint_is_listed_with_its_status_codes(schema, path, method):
    operation = schema["paths"][path][method]

    assert set(operation["responses"]) == EXPECTED[(path, method)]


@pytest.mark.parametrize("path", ["/api/v1/ingest/events", "/api/v1/ingest/identify"])
def test_sdk_endpoints_require_the_sdk_key(schema, path):
    operation = schema["paths"][path]["post"]

    assert operation["security"] == [{"SdkKey": []}]
    assert schema["components"]["securitySchemes"]["SdkKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "The application's SDK key.",
    }


def test_health_is_documented_as_public(schema):
    # no operation-level security and none at the top level: anyone may call it
    assert "security" not in schema
    assert schema["paths"]["/api/v1/ingest/health"]["get"].get("security", []) in ([], [{}])


def test_batch_request_body_describes_the_envelope(schema):
    body = schema["paths"]["/api/v1/ingest/events"]["post"]["requestBody"]["content"]["application/json"]
    event = schema["components"]["schemas"]["SdkEvent"]

    assert body["schema"] == {"$ref": "#/components/schemas/SdkBatch"}
    assert set(event["required"]) == {
        "schema_version",
        "event_id",
        "event_name",
        "ts_ms",
        "user",
        "device",
        "context",
        "privacy",
    }
    assert body["examples"]


def test_every_response_of_the_sdk_endpoints_has_an_example(schema):
    for path in ("/api/v1/ingest/events", "/api/v1/ingest/identify", "/api/v1/ingest/health"):
        for method, operation in schema["paths"][path].items():
            for code, response in operation["responses"].items():
                if code == "405" and path.endswith("health"):
                    continue
                assert response["content"]["application/json"].get("examples"), (path, method, code)


def test_docs_page_renders(api_client):
    response = api_client.get("/api/docs/")

    assert response.status_code == 200
    assert b"/api/schema/" in response.content


def test_identify_user_id_pattern_refuses_exactly_what_strip_empties(schema):
    # The document's regex is ECMA 262, whose `\s` is not Python's: spelled out, both read it alike.
    pattern = re.compile(schema["components"]["schemas"]["Identify"]["properties"]["user_id"]["pattern"])

    assert not any(pattern.search(blank) for blank in ("\x1d", "\x85", " \t\u3000"))
    assert pattern.search(" a ")
    assert pattern.search("\ufeff")  # not whitespace to Python, so not blank
