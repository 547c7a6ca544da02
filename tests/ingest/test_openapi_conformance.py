"""The OpenAPI document matches what the endpoints do: schemathesis reads `/api/schema/` and fuzzes them.

Requests are generated from the document itself (valid ones and deliberately invalid ones) and
sent in-process to the production WSGI application with real credentials: `x-app-uuid` and an
HMAC `x-signature` over the exact body for `/v1/events`, a live `x-api-key` for the SDK API. Every
answer must be documented (status, content type, body schema), no answer may be a 5xx, valid data
must be accepted and invalid data refused. Examples are bounded so the whole run takes a minute
or two.
"""

import hashlib
import hmac
import json
import uuid

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.core import NotSet

from saastracker.wsgi import application as wsgi_application

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MAX_EXAMPLES = 40


@pytest.fixture
def api_schema(db, settings):
    """The document as the app serves it, called through the same WSGI entry point as production."""
    settings.RATE_LIMIT_PER_SECOND = settings.RATE_LIMIT_BURST = 10**6  # 429 is documented, but not the point here
    # Django's own test client does this: a request must not close the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_application)
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


def body_bytes(case) -> bytes:
    """The bytes the WSGI transport sends for this case's body (werkzeug's `json.dumps`)."""
    if isinstance(case.body, NotSet):
        return b""
    if isinstance(case.body, bytes):
        return case.body
    if case.body is None:
        return b"null"
    return json.dumps(case.body).encode("utf-8")


def credentials(case, *, app_uuid: uuid.UUID, api_secret: str, sdk_key: str) -> dict[str, str]:
    """Real credentials wherever the case sends some, so valid cases reach validation and storage.

    A case that leaves a credential out, or sends one that is not even well formed, keeps it as
    generated: those are the negative cases the document says are refused.
    """
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    real: dict[str, str] = {}
    if case.path == "/v1/events":
        try:
            uuid.UUID(str(headers.get("x-app-uuid")))
        except ValueError:
            pass
        else:
            real["x-app-uuid"] = str(app_uuid)
        if "x-signature" in headers:
            real["x-signature"] = hmac.new(api_secret.encode(), body_bytes(case), hashlib.sha256).hexdigest()
    elif case.path.startswith("/api/v1/ingest/") and case.path != "/api/v1/ingest/health":
        real["x-api-key"] = sdk_key
    return real


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_behaves_as_its_openapi_document_says(case, application, api_secret, sdk_key):
    # Given a request generated from the document, with real credentials where it carries some
    headers = credentials(case, app_uuid=application.uuid, api_secret=api_secret, sdk_key=sdk_key)

    # Then the answer is documented, never a 5xx, and valid/invalid data is accepted/refused
    case.call_and_validate(headers=headers)
