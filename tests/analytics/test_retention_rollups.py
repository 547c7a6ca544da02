"""Retention's rollup path answers exactly what the raw statement answers, and only where it can.

One generated data set over ten weeks, mostly folded into the rollups and partly still queued (late
events on folded days, users and orgs known to the dense-id dictionary and new ones), two
environments plus none, and SDK events with and without consent. Every query is run on both paths
(`accelerate=False` forces the raw statement) on PostgreSQL and must match exactly.
"""

import random
import uuid
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from analytics.fold import fold_drain, unfolded_count
from analytics.models import NameDay
from analytics.query.retention import retention_answer
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory

pytestmark = pytest.mark.django_db(transaction=True)

TODAY = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FROM = TODAY - timedelta(weeks=8)
TO = TODAY + timedelta(days=1)
NAMES = ["signup", "page_view", "report_run"]
ENVS = ["production", "staging", None]
USERS = [f"{i:064x}" for i in range(24)]
ORGS = [f"org_{i}" for i in range(8)] + [""]


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _events(app, rnd: random.Random, n: int, *, users: list[str], orgs: list[str], days: int) -> None:
    for _ in range(n):
        EventFactory(
            application=app,
            event=rnd.choice(NAMES),
            user_hash=rnd.choice(users),
            customer_org_id=rnd.choice(orgs),
            environment=rnd.choice(ENVS),
            occurred_at=TODAY - timedelta(days=rnd.randrange(-1, days), seconds=rnd.randrange(86400)),
        )


def _sdk_events(app, rnd: random.Random, n: int, *, consent: bool = True) -> None:
    for _ in range(n):
        SdkEventFactory(
            application=app,
            event_name=rnd.choice(["app_open", "purchase"]),
            user_id=rnd.choice(["u1", "u2", "u3", None]),
            anon_id=uuid.UUID(int=rnd.randrange(8)),
            occurred_at=TODAY - timedelta(days=rnd.randrange(0, 60), seconds=rnd.randrange(86400)),
            consent_analytics=consent,
        )


@pytest.fixture
def app():
    app = ApplicationFactory()
    app.company.retention_days_override = 400
    app.company.save()
    rnd = random.Random(21)
    _events(app, rnd, 1000, users=USERS[:20], orgs=ORGS[:6], days=70)
    _sdk_events(app, rnd, 60)
    EventFactory(application=ApplicationFactory(company=app.company), event="signup", occurred_at=TODAY)
    assert fold_drain().claimed > 0
    # Stored after the fold: late events on folded days, known and new users and orgs.
    _events(app, rnd, 200, users=USERS, orgs=ORGS, days=60)
    _sdk_events(app, rnd, 20)
    _sdk_events(app, rnd, 5, consent=False)  # never counted, on either path
    assert unfolded_count() > 0
    assert NameDay.objects.filter(application=app).exists()
    return app


def _both(app, query: dict) -> tuple[dict, dict, str]:
    fast, path = retention_answer(app=app, query=query, engine="postgres")
    raw, raw_path = retention_answer(app=app, query=query, engine="postgres", accelerate=False)
    assert raw_path == "raw"
    for answer in (fast, raw):
        answer.pop("took_ms")
    return fast, raw, path


def _queries() -> list[dict]:
    queries = []
    for period, periods, start in (("week", 8, FROM), ("day", 12, TODAY - timedelta(days=20)), ("month", 3, FROM)):
        for count_by in ("users", "orgs"):
            for environment in (None, "staging"):
                for start_event, return_event in (("signup", "*"), ("signup", "page_view"), ("*", "report_run")):
                    queries.append(
                        {"source": "events", "start_event": start_event, "return_event": return_event,
                         "period": period, "periods": periods, "count_by": count_by, "environment": environment,
                         "from": iso(start), "to": iso(TO)}
                    )  # fmt: skip
        queries.append(
            {"source": "sdk_events", "start_event": "app_open", "return_event": "*", "period": period,
             "periods": periods, "from": iso(start), "to": iso(TO)}
        )  # fmt: skip
    return queries


def test_every_eligible_query_equals_the_raw_answer(app):
    wrong = {}
    for i, query in enumerate(_queries()):
        fast, raw, path = _both(app, query)
        assert path == "rollups", query
        assert raw["cohorts"], query  # a real answer: cohorts, and some of them came back
        assert any(any(c["retained"]) for c in raw["cohorts"]), query
        if fast != raw:
            wrong[i] = (query, fast, raw)
    assert wrong == {}


def test_a_range_inside_a_period_equals_the_raw_answer(app):
    """Cohorts from a Wednesday to a Friday: the first and last weeks are partial on the start side."""
    wednesday = FROM + timedelta(days=(2 - FROM.weekday()) % 7)
    query = {"source": "events", "start_event": "signup", "return_event": "*", "period": "week", "periods": 6,
             "count_by": "orgs", "from": iso(wednesday), "to": iso(wednesday + timedelta(days=23))}  # fmt: skip
    fast, raw, path = _both(app, query)
    assert path == "rollups"
    assert fast == raw


@pytest.mark.parametrize(
    "change",
    [
        {"start_event": {"event": "signup", "filters": [{"field": "path", "op": "prefix", "value": "/"}]}},
        {"return_event": {"event": "page_view", "filters": [{"field": "plan", "op": "is_set"}]}},
        {"environment": "*"},
        {"from": iso(FROM + timedelta(hours=1))},
        {"to": iso(TO - timedelta(minutes=1))},
    ],
)
def test_other_queries_go_raw(app, change):
    query = {"source": "events", "start_event": "signup", "return_event": "*", "period": "week", "periods": 8,
             "from": iso(FROM), "to": iso(TO), **change}  # fmt: skip
    fast, raw, path = _both(app, query)
    assert path == "raw"
    assert fast == raw


def test_cohorts_retention_may_have_emptied_go_raw(app):
    app.company.retention_days_override = 30  # rows received more than 30 days ago may be deleted
    app.company.save()
    query = {"source": "events", "start_event": "signup", "return_event": "*", "period": "week", "periods": 4,
             "from": iso(FROM), "to": iso(TO)}  # fmt: skip
    assert _both(app, query)[2] == "raw"
    later = {**query, "from": iso(TODAY - timedelta(days=28))}
    fast, raw, path = _both(app, later)
    assert path == "rollups"
    assert fast == raw
