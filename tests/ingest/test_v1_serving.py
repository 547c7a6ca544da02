"""/v1/events as the production WSGI entry point serves it, and when PostgreSQL is down."""

import io
import json
from wsgiref.util import setup_testing_defaults

import pytest
from django.db import connection

from ingest.models import Event
from saastracker.wsgi import application as wsgi_application

from .v1_helpers import URL, event_body, send, sign


def wsgi_call(path: str, *, method: str = "GET", body: bytes = b"", headers: dict | None = None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(headers or {})
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(response_headers)

    chunks = wsgi_application(environ, start_response)
    try:
        answer["body"] = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):  # WSGI: the server closes what it was given
            chunks.close()
    return answer


# The real handler closes connections around each request (as in production), so these tests
# cannot run inside the test-case transaction.
@pytest.mark.django_db(transaction=True)
def test_the_wsgi_entry_point_serves_ingest_with_the_short_middleware_stack(application, api_secret):
    body = event_body()

    answer = wsgi_call(
        URL,
        method="POST",
        body=body,
        headers={
            "CONTENT_TYPE": "application/json",
            "HTTP_X_APP_UUID": str(application.uuid),
            "HTTP_X_SIGNATURE": sign(api_secret, body),
        },
    )

    # The event is stored and security headers are set, but no cookie/frame middleware ran
    assert answer["status"] == 202
    assert Event.objects.filter(event_id=json.loads(answer["body"])["event_id"]).exists()
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in answer["headers"]
    assert "Set-Cookie" not in answer["headers"]


@pytest.mark.django_db(transaction=True)
def test_the_wsgi_entry_point_keeps_the_full_stack_for_the_admin():
    answer = wsgi_call("/admin/")

    # The admin still gets sessions/auth (a redirect to its login) and frame protection
    assert answer["status"] == 302
    assert "/admin/login/" in answer["headers"]["Location"]
    assert answer["headers"]["X-Frame-Options"] == "DENY"


@pytest.mark.django_db(transaction=True)
def test_database_down_is_503_with_retry_after(client, application, api_secret):
    # Given cached credentials, then a database that refuses connections
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    connection.close()
    real_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = "1"
    try:
        # When an event arrives
        response = send(client, app_uuid=application.uuid, secret=api_secret, body=event_body(event="lost"))
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port

    # Then the client is told to retry later, without internals
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response["Retry-After"]
    assert "Traceback" not in response.content.decode()
    assert not Event.objects.filter(event="lost").exists()
