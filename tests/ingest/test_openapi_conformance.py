"""The OpenAPI document matches what the endpoints do: schemathesis reads `/api/schema/` and fuzzes them.

Requests are generated from the document itself (valid ones and deliberately invalid ones) and
sent in-process to the production WSGI application with real credentials: `x-app-uuid` and an
HMAC `x-signature` over the exact body for `/v1/events`, a live `x-api-key` for the SDK API, and
for the analytics API a personal API key (or a logged-in session) of an admin of the app's company
and the app's real uuid. Every answer must be documented (status, content type, body schema), no
answer may be a 5xx, valid data must be accepted and invalid data refused. Examples are bounded so
the whole run takes a minute or two.

The examples are the same on every run (`derandomize`), so CI judges the code and not the draw: a
fuzzer's new find belongs in a run a developer watches. `SCHEMATHESIS_EXPLORE=1` draws fresh ones.
"""

import gzip
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.config._checks import MissingRequiredHeaderConfig
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from analytics.api.params import MAX_WINDOW_DAYS
from apps_registry.models import Membership
from ingest.schemas.v1 import TS_MAX_FUTURE_SECONDS
from saastracker.wsgi import application as wsgi_application
from tests.factories import MembershipFactory, PersonalApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

MAX_EXAMPLES = 25
BATCH = "/api/v1/ingest/events"
ANALYTICS = "/api/v1/analytics/"
CANONICAL_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

# Generating the document touches no database, so it is read once, when the module is collected.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_application)
# OpenAPI 3.0 cannot say "no NUL in a key" (no `propertyNames`): the document says it in words and
# test_properties_limits.py covers it; here NUL is left out of generated strings.
schema.config.generation.allow_x00 = False
# The contract answers a request that names no app like one naming an unknown app: 404 `Unknown app_uuid`.
schema.config.checks.missing_required_header = MissingRequiredHeaderConfig(
    expected_statuses=["400", "401", "403", "404", "406", "415", "422"]
)


@pytest.fixture(autouse=True)
def _requests_share_the_test_transaction(settings):
    """Django's own test client does this: a request must not close the test's transaction."""
    settings.RATE_LIMIT_PER_SECOND = settings.RATE_LIMIT_BURST = 10**6  # 429 is documented, but not the point here
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def personal_key(application) -> str:
    """A personal API key of an admin of the application's company: an admin, so feature writes reach validation."""
    user = MembershipFactory(company=application.company, role=Membership.Role.ADMIN).user
    return PersonalApiKeyFactory(user=user).raw_key


def body_bytes(case) -> bytes:
    """The bytes the WSGI transport sends for this case's body (werkzeug's `json.dumps`)."""
    if isinstance(case.body, NotSet):
        return b""
    if isinstance(case.body, bytes):
        return case.body
    if case.body is None:
        return b"null"
    return json.dumps(case.body).encode("utf-8")


def header(case, name: str) -> str | None:
    return {key.lower(): value for key, value in (case.headers or {}).items()}.get(name)


def credentials(
    case, *, app_uuid: uuid.UUID, api_secret: str, sdk_key: str, personal_key: str, body: bytes
) -> dict[str, str]:
    """Real credentials wherever the case sends some, so valid cases reach validation and storage.

    A case that leaves a credential out, or sends one that is not even well formed, keeps it as
    generated: those are the negative cases the document says are refused. An analytics case that
    names a well-formed app uuid names the real app (the only one its key may read).
    """
    real: dict[str, str] = {}
    if case.path.startswith(ANALYTICS):
        if CANONICAL_UUID.match(str((case.path_parameters or {}).get("app_uuid"))):
            case.path_parameters["app_uuid"] = str(app_uuid)
        if str(header(case, "authorization")).startswith("Bearer "):
            # The exact name schemathesis strips for its no-auth probes; a program with a key sends no
            # session cookie, so the generated (meaningless) one goes.
            real["Authorization"] = f"Bearer {personal_key}"
            (case.cookies or {}).pop("sessionid", None)
    elif case.path == "/v1/events":
        if CANONICAL_UUID.match(str(header(case, "x-app-uuid"))):
            real["x-app-uuid"] = str(app_uuid)
        if header(case, "x-signature") is not None:
            real["x-signature"] = hmac.new(api_secret.encode(), body, hashlib.sha256).hexdigest()
    elif case.path != "/api/v1/ingest/health":
        real["x-api-key"] = sdk_key
    return real


def as_a_client_sends_it(case) -> dict:
    """What a real client does that a document cannot say: gzip the body it labels gzip, keep
    `ts_epoch` within a year of now, ask the analytics API for a window of at most 366 days
    ending by `to` and an explorer query for at most 400 days after `from` (the document says so in
    words; JSON Schema has no "now" and no "before `to`")."""
    extra: dict = {}
    query = case.query or {}
    if case.path.startswith(ANALYTICS) and query.get("from") and "range" in query:
        del query["range"]  # `range` is a preset instead of `from` (documented: not both)
    if case.path.startswith(ANALYTICS) and isinstance(query.get("from"), str):
        try:
            date_to = date.fromisoformat(query["to"]) if query.get("to") else datetime.now(UTC).date()
            date_from = date.fromisoformat(query["from"])
        except (TypeError, ValueError):
            pass  # not dates: left as generated, to be refused
        else:
            earliest = max(date.min + timedelta(days=MAX_WINDOW_DAYS), date_to) - timedelta(days=MAX_WINDOW_DAYS - 1)
            query["from"] = min(max(date_from, earliest), date_to).isoformat()
    if case.path.startswith(ANALYTICS) and not (case.meta and case.meta.is_negative_at(ParameterLocation.QUERY)):
        for opaque in ("cursor", "before"):  # a client only sends back a cursor the API gave it
            query.pop(opaque, None)
    sequences = ("/query", "/funnel", "/retention")  # bodies with the explorer's `from`/`to`
    saved = case.body.get("query") if case.path.endswith("/insights") and isinstance(case.body, dict) else None
    if isinstance(saved, dict) and not body_is_negative(case):
        query_range_as_a_client_sends_it(saved)  # a saved insight's query: the same range rules
    if case.path.endswith(sequences) and isinstance(case.body, dict) and not body_is_negative(case):
        query_range_as_a_client_sends_it(case.body)
    if case.path.endswith("/funnel/dropoff") and not (case.meta and case.meta.is_negative_at(ParameterLocation.QUERY)):
        dropoff_as_a_client_sends_it(query)
    if isinstance(case.body, dict) and type(case.body.get("ts_epoch")) is int and case.body["ts_epoch"] >= 0:
        case.body["ts_epoch"] = min(case.body["ts_epoch"], int(time.time()) + TS_MAX_FUTURE_SECONDS - 60)
    if (header(case, "content-encoding") or "").strip().lower() == "gzip":
        extra["data"] = gzip.compress(body_bytes(case))
    return extra


def query_range_as_a_client_sends_it(body: dict) -> None:
    """An explorer query's `from` in years 1971 to 9997 and `to` later, within 400 days: the document
    says so in words (JSON Schema cannot compare two members); a generated date-time keeps its shape."""

    def parsed(value: object) -> datetime | None:
        try:
            return datetime.fromisoformat(value).astimezone(UTC)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None

    start, end = parsed(body.get("from")), parsed(body.get("to"))
    if start is None or end is None:
        return  # not a date-time: generated to be refused
    if not 1971 <= start.year <= 9997:
        body["from"] = "2024" + body["from"][4:]  # a leap year: the generated month and day exist
        start = parsed(body["from"])
    if start is not None and not start < end <= start + timedelta(days=400):
        body["to"] = (start + timedelta(days=1)).isoformat()


def dropoff_as_a_client_sends_it(query: dict) -> None:
    """The funnel in `query` (JSON) within the explorer's range rules, and `step` one of its steps:
    a client asks for the drop-off of a funnel it ran (JSON Schema cannot relate `step` to `steps`)."""
    funnel = query.get("query")
    as_text = isinstance(funnel, str)
    if as_text:
        try:
            funnel = json.loads(funnel)
        except ValueError:
            return
    if not isinstance(funnel, dict):
        return
    query_range_as_a_client_sends_it(funnel)
    query["query"] = json.dumps(funnel) if as_text else funnel
    steps = funnel.get("steps")
    step = query.get("step")
    if isinstance(steps, list) and len(steps) >= 2 and str(step).isdigit():
        query["step"] = min(max(int(step), 2), len(steps))


def body_is_negative(case) -> bool:
    component = case.meta.components.get(ParameterLocation.BODY) if case.meta is not None else None
    return component is not None and component.mode.is_negative


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("SCHEMATHESIS_EXPLORE") != "1",
)
def test_every_operation_behaves_as_its_openapi_document_says(case, application, api_secret, sdk_key, personal_key):
    # Given a request generated from the document, as a client sends it, with real credentials
    extra = as_a_client_sends_it(case)
    signed = body_bytes(case)  # the signature covers the JSON, before any gzip
    headers = credentials(
        case, app_uuid=application.uuid, api_secret=api_secret, sdk_key=sdk_key, personal_key=personal_key, body=signed
    )

    response = case.call(headers=headers, **extra)

    # Then the answer is documented, never a 5xx, and valid data is accepted and invalid data refused.
    # A batch is judged event by event (documented: 200 with the rejected events listed), so an
    # invalid event in a valid envelope is refused in `errors` rather than with a 4xx.
    batch = case.path == BATCH
    # A CSV import's body is any text to the document (OpenAPI cannot describe a valid CSV file): a
    # schema-valid body the import refuses line by line is a documented 400, not a contract breach.
    csv_import = "/imports/" in case.path
    # A health model has rules across its members (a weight above 0, watch_min below healthy_min, the
    # 50 % drop below the 70 % one) that OpenAPI cannot state: a schema-valid body breaking one is a
    # documented 400 naming the member (tests/analytics/test_health_api.py checks each).
    cross_field = case.path.endswith(("/health/model", "/health/model/preview"))
    case.validate_response(
        response,
        headers=headers,
        excluded_checks=[negative_data_rejection]
        if batch
        else [positive_data_acceptance]
        if csv_import or cross_field
        else [],
        transport_kwargs={"headers": headers, **extra},
    )
    if batch and body_is_negative(case) and response.status_code == 200:
        assert response.json()["rejected"] >= 1, case.body
