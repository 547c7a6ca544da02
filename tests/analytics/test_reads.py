"""Every analytics read runs under ANALYTICS_QUERY_TIMEOUT (analytics/reads.py): a read that PostgreSQL
cannot finish in time is cancelled by the server and answered 504, in the API and on the pages.

A second connection holds an ACCESS EXCLUSIVE lock on the table the read needs, so the read waits
(lock waits count toward `statement_timeout`): without the timeout it would wait until the lock goes.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.test import Client

from analytics.reads import analytics_read, timed_read
from apps_registry.models import Membership
from ingest.errors import ApiError
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
LOCK_HOLD_SECONDS = 8  # far past the test's timeout: only the timeout can end the read in time


@contextmanager
def table_locked(table: str) -> Iterator[None]:
    """`table` locked by another session until the block ends (released at once if it ends early)."""
    s = connection.settings_dict
    timer = None
    other = psycopg.connect(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"], host=s["HOST"] or None, port=s["PORT"] or None
    )
    try:
        other.execute("SET lock_timeout = '5s'")
        other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        timer = threading.Timer(LOCK_HOLD_SECONDS, other.rollback)  # the lock ends, with or without a timeout
        timer.start()
        yield
    finally:
        if timer is not None:
            timer.cancel()
        other.rollback()
        other.close()


@pytest.fixture
def short_timeout(settings):
    settings.ANALYTICS_QUERY_TIMEOUT = 0.3


@pytest.fixture
def reader_key(application) -> str:
    from tests.factories import PersonalApiKeyFactory

    user = MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user
    return PersonalApiKeyFactory(user=user).raw_key


API_READS = [
    ("activity", "analytics_dailytotal"),
    ("active-users", "analytics_dailytotal"),
    ("pages", "analytics_pathday"),
    ("pages/trend?path=/x", "analytics_pathday"),
    ("features", "analytics_dailytotal"),
    ("organizations", "analytics_organization"),
    ("organizations/acme", "analytics_organization"),
    ("stream", "ingest_event"),
    ("health/backtest", "analytics_organization"),
]


@pytest.mark.parametrize(("endpoint", "table"), API_READS)
def test_every_api_read_is_cancelled_after_the_timeout(
    api_client, application, reader_key, short_timeout, endpoint, table, caplog
):
    # Given a read the database cannot answer in time (its table is locked by another session)
    url = f"/api/v1/analytics/apps/{application.uuid}/{endpoint}"
    with table_locked(table), caplog.at_level(logging.ERROR):
        # When a reader asks for it
        response = api_client.get(url, HTTP_AUTHORIZATION=f"Bearer {reader_key}")

    # Then it is a 504 like the explorer's, and not logged as a database outage
    assert response.status_code == 504, response.content
    assert response.json()["error"] == "query_timeout"
    assert "ANALYTICS_QUERY_TIMEOUT" in response.json()["message"]
    assert not [r for r in caplog.records if r.name == "ingest.errors"]


PAGE_READS = [
    ("", "analytics_dailytotal"),
    ("pages/", "analytics_pathday"),
    ("features/", "analytics_dailytotal"),
    ("organizations/", "analytics_organization"),
    ("organizations/acme/", "analytics_organization"),
    ("stream/", "ingest_event"),
]


@pytest.mark.parametrize(("section", "table"), PAGE_READS)
def test_every_page_shows_its_error_state_after_the_timeout(application, short_timeout, section, table):
    client = Client()
    client.force_login(MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user)

    with table_locked(table):
        response = client.get(f"/app/{application.uuid}/{section}")

    assert response.status_code == 200
    assert "ANALYTICS_QUERY_TIMEOUT" in response.content.decode()


def test_the_helper_turns_a_cancelled_statement_into_a_504_and_nests(short_timeout):
    # Given a read of other code (revenue, funnels) wrapped in the shared helper
    @timed_read
    def slow() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")

    # When it runs past the limit, even inside another read
    with pytest.raises(ApiError) as caught, analytics_read():
        slow()

    # Then the server cancelled it, and the caller gets the 504
    assert caught.value.status_code == 504
    assert caught.value.code == "query_timeout"
