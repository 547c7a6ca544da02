"""The live stream's poll: one indexed query on the event table, and only the rows the browser lacks."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps_registry.models import Membership
from tests.factories import EventFactory, MembershipFactory

pytest.importorskip("analytics.stream", reason="the event stream (issue 11) is not installed")

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(application) -> Client:
    client = Client()
    client.force_login(MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user)
    return client


def keys(body: str) -> list[str]:
    return [part.split('"', 1)[0] for part in body.split('data-key="')[1:]]


def test_a_poll_reads_the_events_with_one_query(member_client, application):
    EventFactory.create_batch(3, application=application)
    url = f"/app/{application.uuid}/stream/rows/"
    member_client.get(url)

    with CaptureQueriesContext(connection) as captured:
        response = member_client.get(url)

    assert response.status_code == 200
    on_events = [q["sql"] for q in captured.captured_queries if "ingest_event" in q["sql"]]
    assert len(on_events) == 1
    assert "ORDER BY received_at DESC, id DESC LIMIT" in on_events[0]
    # Besides it: the session, its user, the membership and the application (as every page), and the
    # read's timeout (its settings, plus SAVEPOINT/RELEASE here, inside the test's transaction)
    assert len(captured.captured_queries) == 8
    assert any("statement_timeout" in q["sql"] for q in captured.captured_queries)


def test_a_poll_returns_only_the_rows_the_browser_does_not_show(member_client, application):
    now = timezone.now()
    old = EventFactory(application=application, event="old", received_at=now - timedelta(seconds=10))
    same_a = EventFactory(application=application, event="same_a", received_at=now)
    same_b = EventFactory(application=application, event="same_b", received_at=now)
    url = f"/app/{application.uuid}/stream/rows/"

    # The browser shows `old` and `same_a`; `same_b` was committed with the very same receive time
    response = member_client.get(url, {"since": now.isoformat(), "seen": [str(same_a.event_id)]})
    assert keys(response.content.decode()) == [str(same_b.event_id)]

    response = member_client.get(url, {"since": (now - timedelta(seconds=10)).isoformat(), "seen": [str(old.event_id)]})
    assert set(keys(response.content.decode())) == {str(same_a.event_id), str(same_b.event_id)}
