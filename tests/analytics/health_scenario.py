"""The issue-19 scenario, hand-built: 30 customer organizations over 61 days, four features.

As of NOW (the real time the test runs, so the API, the preview and the backtest, which read the
clock, see the same days): the last 30 days are day 0..29 before today, the 30 before day 30..59.
- 8 steady: 12 events a day every day, 5 users, every feature;
- 6 growing: 6 a day in the month before, 12 a day in the last one;
- 3 dropping by 60 % (20 a day, then 8) and 3 by 75 % (20 a day, then 5), still broad and deep;
- 5 silent for the last 19 days (12 a day until day 19);
- 3 new (first seen 3 and 1 days ago, and 31 s before NOW with one event);
- 2 gone for 50 days (12 a day until day 50).
Events are bulk-inserted (the fold trigger queues them like any INSERT) and folded.
"""

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta

from django.db import transaction

from analytics.fold import fold_drain
from analytics.services import feature_create
from ingest.models import Event

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
FEATURE_EVENTS = ["report_run", "export", "invite", "dashboard_view"]

GROUPS = {
    "steady": 8,
    "growing": 6,
    "drop60": 3,
    "drop75": 3,
    "silent": 5,
    "new": 3,
    "gone": 2,
}
EXPECTED_BUCKET = {
    "steady": "healthy",
    "growing": "healthy",
    "drop60": "watch",
    "drop75": "at_risk",
    "silent": "at_risk",
    "new": "new",
    "gone": "inactive",
}
EXPECTED_FIRST_REASON = {
    "steady": "steady",
    "growing": "usage_up",
    "drop60": "usage_drop",
    "drop75": "usage_drop",
    "silent": "silent",
    "new": "new",
    "gone": "inactive",
}


def day(offset: int) -> date:
    """`offset` days before TODAY."""
    return TODAY - timedelta(days=offset)


def _session(org: str, user: int, on: date) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"{org}/{user}/{on}".encode()).hexdigest())  # noqa: S324 (an id, not security)


def events_on(app, org: str, on: date, n: int, *, users: int = 5, at: datetime | None = None) -> list[Event]:
    """n events of an org on a day, spread over `users` users (one session per user a day) and the features."""
    when = at or datetime(on.year, on.month, on.day, 10, 0, tzinfo=NOW.tzinfo)
    return [
        Event(
            application=app,
            company=app.company,
            event=FEATURE_EVENTS[i % len(FEATURE_EVENTS)],
            user_hash=f"{org}-u{i % users}".ljust(64, "x"),
            customer_org_id=org,
            path="/",
            session_id=_session(org, i % users, on),
            occurred_at=when,
        )
        for i in range(n)
    ]


def per_day(group: str, offset: int) -> int:
    """Events a day of an org of the group, `offset` days before TODAY (0..60)."""
    recent = offset <= 29
    return {
        "steady": 12,
        "growing": 12 if recent else 6,
        "drop60": 8 if recent else 20,
        "drop75": 5 if recent else 20,
        "silent": 0 if offset < 19 else 12,
        "gone": 0 if offset < 50 else 12,
    }[group]


def org_ids() -> dict[str, str]:
    """org id -> group."""
    return {f"{group}-{i}": group for group, n in GROUPS.items() for i in range(n)}


def build(app) -> dict[str, str]:
    """Store and fold the scenario's events for `app`; returns org id -> group."""
    for name in FEATURE_EVENTS:
        with transaction.atomic():  # feature_create locks the app's features (callers hold a transaction)
            feature_create(app=app, name=name, events=[name], path_prefixes=[])
    rows: list[Event] = []
    orgs = org_ids()
    for org, group in orgs.items():
        if group == "new":
            continue
        for offset in range(61):
            n = per_day(group, offset)
            if n:
                rows += events_on(app, org, day(offset), n)
    rows += events_on(app, "new-0", day(3), 8) + events_on(app, "new-0", day(1), 8)
    rows += events_on(app, "new-1", day(1), 4)
    rows += events_on(app, "new-2", TODAY, 1, users=1, at=NOW - timedelta(seconds=31))
    Event.objects.bulk_create(rows, batch_size=5000)
    fold_drain()
    return orgs
