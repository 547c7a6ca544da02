"""Funnels from the fold's narrow table (analytics/query/funnel_fast.py) answer exactly what the raw
statement answers, and only where they can.

One generated history on a minute grid (equal timestamps, repeated names, attempts past the window
and the range edges) over a few days, mostly folded and partly still queued (late events, users and
orgs the dense-id dictionary knows and new ones), two environments plus none, SDK events with and
without consent. Every query runs on both paths (`accelerate=False` forces the raw statement) and
the answers, drop-off lists included, must be equal; the path taken is the one `funnel_answer` names.
"""

import random
import uuid
from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from analytics.fold import fold_drain, rollups_rebuild, unfolded_count
from analytics.funnel_events import funnel_events_prune
from analytics.models import FoldQueue, FunnelEvent
from analytics.query.funnel import dropoff_answer, funnel_answer
from analytics.query.funnel_fast import micros
from ingest.models import Event
from ingest.services.retention import retention_apply
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now().astimezone(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(days=3)  # the grid: three days of minutes before now
NAMES = ["A", "B", "C"]
ENVS = ["production", "staging", None]
USERS = [f"{i:064x}" for i in range(30)]
ORGS = [f"org_{i}" for i in range(6)] + [""]


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _events(app, rnd: random.Random, n: int, *, users: list[str], orgs: list[str]) -> None:
    for _ in range(n):
        u = rnd.randrange(len(users))
        EventFactory(
            application=app,
            event=rnd.choice(NAMES),
            user_hash=users[u],
            customer_org_id=orgs[u % len(orgs)],
            environment=ENVS[u % 3] if rnd.random() < 0.9 else rnd.choice(ENVS),
            occurred_at=START + timedelta(minutes=rnd.randrange(0, 3 * 24 * 60 // 8) * 8),  # equal times likely
        )


def _sdk_events(app, rnd: random.Random, n: int, *, consent: bool = True) -> None:
    for _ in range(n):
        SdkEventFactory(
            application=app,
            event_name=rnd.choice(["open", "buy"]),
            user_id=rnd.choice(["u1", "u2", "u3", None]),
            anon_id=uuid.UUID(int=rnd.randrange(6)),
            occurred_at=START + timedelta(minutes=rnd.randrange(0, 3 * 24 * 60 // 8) * 8),
            consent_analytics=consent,
        )


@pytest.fixture
def app():
    app = ApplicationFactory()
    rnd = random.Random(21)
    _events(app, rnd, 900, users=USERS[:24], orgs=ORGS[:5])
    _sdk_events(app, rnd, 80)
    _sdk_events(app, rnd, 10, consent=False)  # never counted, on either path
    EventFactory(application=ApplicationFactory(company=app.company), event="A", occurred_at=START)  # another app
    assert fold_drain().claimed > 0
    # Stored after the fold: late events on folded days, known and new users and orgs.
    _events(app, rnd, 150, users=USERS, orgs=ORGS)
    _sdk_events(app, rnd, 20)
    assert unfolded_count() > 0
    return app


def _both(app, query: dict) -> tuple[dict, dict, str]:
    fast, path = funnel_answer(app=app, query=query, engine="postgres")
    raw, raw_path = funnel_answer(app=app, query=query, engine="postgres", accelerate=False)
    assert raw_path == "raw"
    for answer in (fast, raw):
        answer.pop("took_ms")
    return fast, raw, path


def _dropoffs(app, query: dict, *, accelerate: bool) -> tuple[list, set[str]]:
    out, paths = [], set()
    for k in range(2, len(query["steps"]) + 1):
        answer, path = dropoff_answer(app=app, query=query, step=k, engine="postgres", accelerate=accelerate)
        answer.pop("took_ms")
        out.append(answer)
        paths.add(path)
    return out, paths


def _queries() -> list[dict]:
    queries = []
    ranges = [
        (START, NOW + timedelta(minutes=1)),  # everything
        (START + timedelta(hours=7, minutes=3), START + timedelta(days=1, hours=5)),  # edges off the grid
        (START + timedelta(hours=8), START + timedelta(days=1, hours=8)),  # edges on the grid (equal times)
    ]
    for steps in (["A", "B", "C"], ["A", "B", "B", "A"], ["C", "A"]):
        for window in (60, 3600, 6 * 3600):
            for count_by in ("users", "orgs"):
                for environment in (None, "staging"):
                    for start, end in ranges:
                        queries.append(
                            {"source": "events", "steps": [{"event": s} for s in steps], "window_seconds": window,
                             "count_by": count_by, "environment": environment, "from": iso(start), "to": iso(end)}
                        )  # fmt: skip
    for start, end in ranges:
        queries.append(
            {"source": "sdk_events", "steps": [{"event": "open"}, {"event": "buy"}], "window_seconds": 7200,
             "from": iso(start), "to": iso(end)}
        )  # fmt: skip
    return queries


def _check_all(app, queries: list[dict]) -> None:
    wrong = {}
    for i, query in enumerate(queries):
        fast, raw, path = _both(app, query)
        assert path == "funnel_events", query
        fast_drops, fast_paths = _dropoffs(app, query, accelerate=True)
        raw_drops, _ = _dropoffs(app, query, accelerate=False)
        assert fast_paths == {"funnel_events"}
        if fast != raw or fast_drops != raw_drops:
            wrong[i] = (query, fast, raw, fast_drops, raw_drops)
    assert wrong == {}


def test_every_eligible_query_equals_the_raw_answer(app):
    queries = _queries()
    answers = [_both(app, q)[1] for q in queries]
    # Real answers: people get through, others drop, on users and orgs, on both sources.
    assert any(a["steps"][-1]["count"] for a in answers)
    assert any(a["steps"][0]["count"] > a["steps"][-1]["count"] for a in answers)
    _check_all(app, queries)


def test_folded_rows_are_read_from_the_narrow_table(app):
    """Without the fold's copy the fast answer changes: it really reads analytics_funnelevent."""
    query = {"source": "events", "steps": [{"event": "A"}, {"event": "B"}], "window_seconds": 86400,
             "from": iso(START), "to": iso(NOW + timedelta(minutes=1))}  # fmt: skip
    fold_drain()
    fast, raw, path = _both(app, query)
    assert (path, fast) == ("funnel_events", raw)
    counted = Event.objects.filter(application=app).count()
    assert FunnelEvent.objects.filter(application=app, source=FoldQueue.SOURCE_EVENTS).count() == counted

    FunnelEvent.objects.filter(application=app, name="B").delete()

    fast, raw, path = _both(app, query)
    assert path == "funnel_events"
    assert fast["steps"][1]["count"] == 0 < raw["steps"][1]["count"]


def test_everything_folded_then_rebuilt_equals_the_raw_answer(app):
    fold_drain()
    assert unfolded_count() == 0
    before = FunnelEvent.objects.filter(application=app).count()

    rollups_rebuild(app_id=app.pk)

    assert FunnelEvent.objects.filter(application=app).count() == before
    _check_all(app, _queries()[::7])


def test_a_rebuild_from_a_day_keeps_the_days_before(app):
    fold_drain()
    since = (START + timedelta(days=1)).date()
    rollups_rebuild(app_id=app.pk, since=since)
    _check_all(app, _queries()[::9])


def test_after_retention_the_fast_path_answers_only_after_the_horizon(app):
    """Retention deletes raw rows received before its cutoff and the prune the narrow rows before
    the horizon; a funnel from before the horizon goes raw, one after it still agrees."""
    fold_drain()
    app.company.retention_days_override = 2
    app.company.save()
    with connection.cursor() as cursor:  # exported, received as they occurred: retention deletes the oldest day
        cursor.execute(
            "UPDATE ingest_event SET received_at = occurred_at, export_state = 1 WHERE application_id = %s", [app.pk]
        )
    assert retention_apply()["events"] > 0
    deleted = funnel_events_prune()
    assert deleted > 0
    assert not FunnelEvent.objects.filter(application=app, occurred_us__lt=micros(NOW - timedelta(days=2))).exists()
    before = {"source": "events", "steps": [{"event": "A"}, {"event": "B"}], "window_seconds": 3600,
              "from": iso(START), "to": iso(NOW)}  # fmt: skip
    assert _both(app, before)[2] == "raw"
    after = {**before, "from": iso(NOW - timedelta(days=2) + timedelta(hours=1))}
    fast, raw, path = _both(app, after)
    assert path == "funnel_events"
    assert fast == raw
    assert raw["steps"][0]["count"] > 0


@pytest.mark.parametrize(
    "change",
    [
        {"steps": [{"event": "A", "filters": [{"field": "path", "op": "prefix", "value": "/"}]}, {"event": "B"}]},
        {"breakdown": "environment"},
        {"from": iso(NOW - timedelta(days=400))},
    ],
)
def test_other_queries_go_raw(app, change):
    query = {"source": "events", "steps": [{"event": "A"}, {"event": "B"}], "from": iso(START), "to": iso(NOW),
             **change}  # fmt: skip
    assert _both(app, query)[2] == "raw"


def test_the_switch_sends_every_funnel_raw(app, settings):
    settings.ANALYTICS_FUNNEL_FAST_PATH = False
    query = {"source": "events", "steps": [{"event": "A"}, {"event": "B"}], "from": iso(START), "to": iso(NOW)}
    assert _both(app, query)[2] == "raw"


def test_deleting_an_app_deletes_its_narrow_rows(app):
    fold_drain()
    assert FunnelEvent.objects.filter(application=app).exists()
    app.delete()
    assert not FunnelEvent.objects.filter(application_id=app.pk).exists()
