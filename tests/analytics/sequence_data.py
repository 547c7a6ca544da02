"""Hand-built event histories for the funnel and retention tests, with the answers worked out by hand.

Funnel (steps A → B → C on `events`, window 1 hour, range one day from T, a Monday 10:00 UTC):
- u1 (org o1, plan pro): A T, B +10 min, C +20 min: step 3 (600 s, 600 s).
- u2 (org o1, plan pro): B T, A +5 min, C +10 min: out of order, step 1 only.
- u3 (org o2, plan free): A, B, C all at T: equal timestamps are in order, step 3 (0 s, 0 s).
- u4 (org o2): A T (plan enterprise), A T+2 h (plan free), B T+2 h 30 min: the first attempt's B
  is past the window, the second attempt reaches step 2 (1,800 s); its breakdown value is `free`.
- u5 (org o3, no plan): A T, B +50 min, C +70 min: C is past the window, step 2 (3,000 s).
- u6 (org o3): A a day before `from` (with B 5 min later), and A at `to` (excluded): not counted.
- u7 (org o4, plan pro): two attempts both reaching step 3 (1 min + 1 min, then 10 + 10 min): counted once,
  with the earliest attempt's times (60 s, 60 s).

Retention (weeks, relative to this week's Monday M0; cohorts from M0 - 3 weeks to M0 - 1 week):
- u1 (o1): signup W-3 Mon; page_view W-2 and W0.          u2 (o1): signup W-3 Sun 23:59:59; page_view W-2 Mon 00:00.
- u3 (o2): signup W-4 (before the range) and W-2 Tue; page_view W-2 (same week), W-1 and W0.
- u4 (o2): signup W-2; feature_used W-1 (a return only for `*`).   u5 (o3): signup W-1 (after the range).
"""

import datetime as dt

from django.utils import timezone

from tests.factories import EventFactory

T = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)
FROM = T
TO = T + D


def user(n: int) -> str:
    return f"{n:064x}"


def funnel_events(app) -> None:
    rows = [
        (1, "o1", "pro", [("A", 0), ("B", 10 * M), ("C", 20 * M)]),
        (2, "o1", "pro", [("B", 0), ("A", 5 * M), ("C", 10 * M)]),
        (3, "o2", "free", [("A", 0), ("B", 0), ("C", 0)]),
        (4, "o2", None, [("A", 0, "enterprise"), ("A", 2 * H, "free"), ("B", 2 * H + 30 * M)]),
        (5, "o3", None, [("A", 0), ("B", 50 * M), ("C", 70 * M)]),
        (6, "o3", "pro", [("A", -D), ("B", -D + 5 * M), ("A", D)]),
        (7, "o4", "pro", [("A", H), ("B", H + M), ("C", H + 2 * M), ("A", 3 * H), ("B", 3 * H + 10 * M),
                          ("C", 3 * H + 20 * M)]),
    ]  # fmt: skip
    for n, org, plan, events in rows:
        for event in events:
            name, offset = event[0], event[1]
            EventFactory(
                application=app,
                event=name,
                user_hash=user(n),
                customer_org_id=org,
                plan=event[2] if len(event) > 2 else plan,
                occurred_at=T + (offset if isinstance(offset, dt.timedelta) else dt.timedelta(0)),
            )


def this_monday() -> dt.datetime:
    now = timezone.now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - dt.timedelta(days=day.weekday())


def week(n: int) -> dt.datetime:
    """Monday 00:00 of week n relative to this week (0)."""
    return this_monday() + dt.timedelta(weeks=n)


def retention_events(app) -> None:
    rows = [
        (1, "o1", "signup", week(-3) + 10 * H),
        (1, "o1", "page_view", week(-2) + 10 * H),
        (1, "o1", "page_view", week(0) + M),
        (2, "o1", "signup", week(-2) - dt.timedelta(seconds=1)),
        (2, "o1", "page_view", week(-2)),
        (3, "o2", "signup", week(-4) + 10 * H),
        (3, "o2", "signup", week(-2) + D + H),
        (3, "o2", "page_view", week(-2) + 2 * D),
        (3, "o2", "page_view", week(-1) + H),
        (3, "o2", "page_view", week(0) + M),
        (4, "o2", "signup", week(-2) + 3 * D),
        (4, "o2", "feature_used", week(-1) + 2 * D),
        (5, "o3", "signup", week(-1) + H),
    ]
    for n, org, name, when in rows:
        EventFactory(application=app, event=name, user_hash=user(n), customer_org_id=org, occurred_at=when)


def funnel_query(**overrides) -> dict:
    return {
        "source": "events",
        "steps": [{"event": "A"}, {"event": "B"}, {"event": "C"}],
        "window_seconds": 3600,
        "from": FROM.isoformat(),
        "to": TO.isoformat(),
        **overrides,
    }


def retention_query(**overrides) -> dict:
    return {
        "source": "events",
        "start_event": "signup",
        "return_event": "page_view",
        "period": "week",
        "periods": 3,
        "from": week(-3).isoformat(),
        "to": week(-1).isoformat(),
        **overrides,
    }
