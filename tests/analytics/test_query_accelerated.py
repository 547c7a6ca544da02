"""The explorer's rollup path answers exactly what the raw query answers, and only where it can.

One data set, partly folded into the rollups and partly still queued (late events on folded days,
users both already known to the dense-id dictionary and new), two environments plus none, an SDK
event without consent and event names whose byte order differs from a locale's. Every accelerated
shape is run on both paths (`accelerate=False` forces the raw statement) and must match exactly.
"""

import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from analytics.fold import fold_drain, unfolded_count
from analytics.models import DailyTotal, NameDay
from analytics.query import query_answer
from ingest.errors import ApiError
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory

pytestmark = pytest.mark.django_db(transaction=True)

TODAY = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FROM = TODAY - timedelta(days=20)
TO = TODAY + timedelta(days=1)
NAMES = ["page_view", "signup", "Zeta", "zeta", "Ämne", "feature_used"]
ENVS = ["production", "staging", None]
USERS = [f"{i:064x}" for i in range(12)]
ORGS = ["org_a", "org_b", "org_c", ""]


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _events(app, rnd: random.Random, n: int, *, users: list[str], days: int) -> None:
    for _ in range(n):
        EventFactory(
            application=app,
            event=rnd.choice(NAMES),
            user_hash=rnd.choice(users),
            customer_org_id=rnd.choice(ORGS),
            environment=rnd.choice(ENVS),
            session_id=uuid.UUID(int=rnd.randrange(30)),
            occurred_at=TODAY - timedelta(days=rnd.randrange(-1, days), seconds=rnd.randrange(86400)),
        )


def _sdk_events(app, rnd: random.Random, n: int) -> None:
    for _ in range(n):
        SdkEventFactory(
            application=app,
            event_name=rnd.choice(["app_open", "purchase"]),
            user_id=rnd.choice(["u1", "u2", None]),
            anon_id=uuid.UUID(int=rnd.randrange(6)),
            session_id=uuid.UUID(int=rnd.randrange(10)),
            occurred_at=TODAY - timedelta(days=rnd.randrange(0, 25), seconds=rnd.randrange(86400)),
        )


@pytest.fixture
def app():
    app = ApplicationFactory()
    rnd = random.Random(11)
    _events(app, rnd, 150, users=USERS[:8], days=25)
    _sdk_events(app, rnd, 30)
    EventFactory(application=ApplicationFactory(company=app.company), occurred_at=TODAY)  # another app
    assert fold_drain().claimed > 0
    # Stored after the fold: late events on folded days, known and new users, a new name; one SDK event
    # without consent (never counted, on either path).
    _events(app, rnd, 60, users=USERS, days=20)
    EventFactory(application=app, event="late_only", occurred_at=FROM + timedelta(hours=5))
    _sdk_events(app, rnd, 10)
    SdkEventFactory(application=app, event_name="purchase", user_id="u9", occurred_at=TODAY, consent_analytics=False)
    assert unfolded_count() > 0
    assert DailyTotal.objects.filter(application=app).exists()
    assert NameDay.objects.filter(application=app).exists()
    return app


def _both(app, query: dict) -> tuple[dict, dict, str]:
    fast, path = query_answer(app=app, query=query, engine="postgres")
    raw, raw_path = query_answer(app=app, query=query, engine="postgres", accelerate=False)
    assert raw_path == "raw"
    for answer in (fast, raw):
        answer.pop("took_ms")
    return fast, raw, path


def _shapes() -> list[dict]:
    shapes = []
    for interval in (None, "day", "week", "month"):
        for measure in ("events", "users", "orgs", "sessions"):
            for group in ([], ["event"]):
                if measure == "sessions" and group:
                    continue
                for filters in ([], [{"field": "environment", "op": "eq", "value": "staging"}]):
                    shapes.append(
                        {"source": "events", "measure": measure, "interval": interval, "group_by": group,
                         "filters": filters, "from": iso(FROM), "to": iso(TO)}
                    )  # fmt: skip
        for measure in ("events", "users", "sessions"):
            for group in ([], ["event_name"]):
                if measure == "sessions" and group:
                    continue
                shapes.append(
                    {"source": "sdk_events", "measure": measure, "interval": interval, "group_by": group,
                     "from": iso(FROM), "to": iso(TO)}
                )  # fmt: skip
    return shapes


def test_every_accelerated_shape_equals_the_raw_answer(app):
    wrong = {}
    for i, query in enumerate(_shapes()):
        fast, raw, path = _both(app, query)
        assert path == "rollups", query
        assert raw["rows"], query  # the data set answers every shape
        if fast != raw:
            wrong[i] = (query, fast, raw)
    assert wrong == {}


def test_limit_and_truncation_match(app):
    for limit in (1, 3, 5):
        query = {"source": "events", "measure": "users", "interval": "day", "group_by": ["event"],
                 "from": iso(FROM), "to": iso(TO), "limit": limit}  # fmt: skip
        fast, raw, path = _both(app, query)
        assert path == "rollups"
        assert fast["truncated"] is True
        assert fast == raw


def test_queued_events_alone_are_counted(app):
    """A window where only queued events fall (the late event before any folded row of its name)."""
    query = {"source": "events", "measure": "users", "group_by": ["event"], "interval": "day",
             "filters": [], "from": iso(FROM), "to": iso(FROM + timedelta(days=1))}  # fmt: skip
    fast, raw, path = _both(app, query)
    assert path == "rollups"
    assert ["late_only", 1] in [row[1:] for row in fast["rows"]]
    assert fast == raw


@pytest.mark.parametrize(
    "change",
    [
        {"filters": [{"field": "path", "op": "prefix", "value": "/"}]},
        {"filters": [{"field": "environment", "op": "neq", "value": "staging"}]},
        {"filters": [{"field": "environment", "op": "eq", "value": ""}]},
        {"group_by": ["properties.plan_tier"]},
        {"group_by": ["event", "customer_org_id"]},
        {"interval": "hour"},
        {"from": iso(FROM + timedelta(hours=1))},
        {"to": iso(TO - timedelta(minutes=1))},
        {"measure": "sessions", "group_by": ["event"]},
    ],
)
def test_other_shapes_go_raw(app, change):
    query = {"source": "events", "measure": "users", "interval": "day", "group_by": ["event"],
             "from": iso(FROM), "to": iso(TO), **change}  # fmt: skip
    fast, raw, path = _both(app, query)
    assert path == "raw"
    assert fast == raw


def test_a_window_retention_may_have_emptied_goes_raw(app):
    company = app.company
    company.retention_days_override = 10  # rows received more than 10 days ago may be deleted
    company.save()
    query = {"source": "events", "measure": "events", "interval": "day", "from": iso(FROM), "to": iso(TO)}
    assert _both(app, query)[2] == "raw"
    later = {**query, "from": iso(TODAY - timedelta(days=9))}
    fast, raw, path = _both(app, later)
    assert path == "rollups"
    assert fast == raw


def test_the_rollup_path_is_cancelled_at_the_timeout(app, settings):
    """A rollup read waiting on a lock (a stand-in for a slow one) is cancelled at ANALYTICS_QUERY_TIMEOUT."""
    settings.ANALYTICS_QUERY_TIMEOUT = 0.3
    query = {"source": "events", "measure": "users", "interval": "day", "from": iso(FROM), "to": iso(TO)}
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("LOCK TABLE analytics_dailytotal IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(ApiError) as raised:
            query_answer(app=app, query=query, engine="postgres")
        other.rollback()
    assert raised.value.status_code == 504
    assert query_answer(app=app, query=query, engine="postgres")[1] == "rollups"
