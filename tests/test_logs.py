"""Structured logs: request and task context on every line, and never a secret, key, signature or body."""

import io
import json
import logging
import uuid

import pytest

from ingest.tasks import export_sweep
from saastracker.logs import ContextFilter, JsonFormatter
from tests.factories import ApiSecretFactory, ApplicationFactory, SdkKeyFactory
from tests.ingest.sdk_helpers import sdk_event
from tests.ingest.v1_helpers import event_body, sign

from .fixtures.serve import Server, http


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_no_secret_key_signature_or_body_reaches_the_logs(serve: Server):
    # Given an application with a known API secret and SDK key, and a server logging at DEBUG
    app = ApplicationFactory()
    secret = ApiSecretFactory(application=app).secret
    key = SdkKeyFactory(application=app).raw_key
    marker = f"body-marker-{uuid.uuid4().hex}"
    wrong_key = f"sk_wrong_{uuid.uuid4().hex}"
    good = event_body(properties={"note": marker})
    bad_schema = event_body(event="", properties={"note": marker})
    headers = {"Content-Type": "application/json", "x-app-uuid": str(app.uuid)}
    signatures = [sign(secret, good), sign(secret, bad_schema), sign("not-the-secret", good)]

    # When good, badly signed and invalid requests of both protocols arrive
    answers = [
        http(
            serve,
            "/v1/events",
            method="POST",
            body=good,
            headers={**headers, "x-signature": signatures[0], "X-Request-ID": "trace-42.a"},
        ),
        http(serve, "/v1/events", method="POST", body=bad_schema, headers={**headers, "x-signature": signatures[1]}),
        http(serve, "/v1/events", method="POST", body=good, headers={**headers, "x-signature": signatures[2]}),
    ]
    sdk_body = json.dumps({"events": [sdk_event(properties={"note": marker}), sdk_event(event_name="")]}).encode()
    for api_key in (key, wrong_key):
        answers.append(
            http(
                serve,
                "/api/v1/ingest/events",
                method="POST",
                body=sdk_body,
                headers={"Content-Type": "application/json", "x-api-key": api_key},
            )
        )
    identify = json.dumps({"anon_id": str(uuid.uuid4()), "user_id": marker}).encode()
    answers.append(
        http(
            serve,
            "/api/v1/ingest/identify",
            method="POST",
            body=identify,
            headers={"Content-Type": "application/json", "x-api-key": key},
        )
    )
    assert [status for status, _, _ in answers] == [202, 400, 401, 200, 401, 200]

    # Then no line of any process holds the secret, a key, a signature or a body value
    text = serve.log_text()
    for needle in (secret, key, wrong_key, marker, *signatures, signatures[2][:6]):
        assert needle not in text
    # ... and every request has one JSON line with its id (echoed to the client), status and duration
    lines = [line for line in json_lines(text) if line["logger"] == "saastracker.request"]
    assert len(lines) >= len(answers)
    first = next(line for line in lines if line["request_id"] == "trace-42.a")
    assert answers[0][1]["x-request-id"] == "trace-42.a"
    assert first["status"] == 202
    assert first["app_uuid"] == str(app.uuid)
    assert first["duration_ms"] > 0
    assert all(line.get("request_id") for line in lines)
    assert {line["request_id"] for line in lines} >= {headers["x-request-id"] for _, headers, _ in answers}


@pytest.mark.django_db
def test_a_request_id_that_is_not_sane_is_replaced(client):
    response = client.get("/api/v1/ingest/health", HTTP_X_REQUEST_ID="bad id\x00" + "x" * 300)

    assert response["X-Request-ID"] != "bad id"
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_task_log_lines_carry_the_task_id_and_name():
    # Given the production handler setup (context filter + JSON formatter)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    task_logger = logging.getLogger("ingest.tasks")
    task_logger.addHandler(handler)
    level = task_logger.level
    task_logger.setLevel(logging.INFO)
    try:
        # When a task that logs runs
        result = export_sweep.apply()
    finally:
        task_logger.removeHandler(handler)
        task_logger.setLevel(level)

    # Then its lines name it and its id
    line = json_lines(stream.getvalue())[0]
    assert line["task_name"] == "ingest.export_sweep"
    assert line["task_id"] == result.id
    assert line["message"].startswith("export status")
