"""Health scores, buckets and signals: each raised and cleared, dismissal, the debounced and daily scans.

Scans run "as of" a fixed time, NOW (2026-06-30): last 30 days = 06-01..06-30, the 30 before =
05-02..05-31, last 14 days = 06-17..06-30, "15-44 days ago" = 05-17..06-16. No feature is defined,
so breadth is left out and the weights 0.3 / 0.3 / 0.2 (recency, trend, depth) are rescaled.
"""

import uuid
from datetime import datetime

import pytest

from analytics.fold import fold_drain
from analytics.health import organizations_scan
from analytics.models import Organization, OrgSignal
from saastracker.celery import app as celery_app
from saastracker.redis_client import get_redis
from tests.factories import CompanyFactory, EventFactory

pytestmark = pytest.mark.django_db

NOW = datetime.fromisoformat("2026-06-30T12:00:00+00:00")


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"2026-{day}T10:00:00+00:00")


def send(app, org: str, day: str, n: int, *, users: int = 1, sessions: int = 1) -> None:
    session_ids = [uuid.uuid4() for _ in range(sessions)]
    for i in range(n):
        EventFactory(
            application=app,
            customer_org_id=org,
            user_hash=f"{org}-{i % users}".ljust(64, "x"),
            session_id=session_ids[i % sessions],
            occurred_at=at(day),
        )


@pytest.fixture
def orgs(application):
    send(application, "grew", "05-10", 10)
    send(application, "grew", "06-29", 20, users=5, sessions=20)
    send(application, "dropped", "05-20", 20)
    send(application, "dropped", "06-28", 5)
    send(application, "quiet", "06-10", 3)
    send(application, "gone", "04-01", 4)
    fold_drain()
    return application


def health(app) -> dict:
    return {
        o.customer_org_id: (o.health_score, o.health_bucket)
        for o in Organization.objects.filter(application=app).order_by("customer_org_id")
    }


def active_signals(app) -> set[tuple[str, str]]:
    return set(
        OrgSignal.objects.filter(application=app, cleared_at__isnull=True).values_list("customer_org_id", "kind")
    )


def test_scores_buckets_and_components_by_hand(orgs):
    organizations_scan(app=orgs, now=NOW)

    # grew: recency 1-1/30, trend min(1, 20/10)=1, depth .5*5/5 + .5*min(1, 4/4)=1
    #   -> (0.3*0.9667 + 0.3 + 0.2) / 0.8 = 98.75 -> 99
    # dropped: recency 1-2/30, trend 5/20, depth .5*1/5 + .5*1/4 = .225 -> 0.4/0.8 = 50, but usage fell
    #   75 % (>= 70 %): capped at 39, at_risk
    # quiet: recency 1-20/30, trend 1 (none before, some now), depth .225 -> 0.445/0.8 = 55.6 -> 56
    # gone: nothing in 30 days -> inactive whatever the score
    assert health(orgs) == {
        "dropped": (39, "at_risk"),
        "gone": (0, "inactive"),
        "grew": (99, "healthy"),
        "quiet": (56, "watch"),
    }
    assert Organization.objects.get(customer_org_id="dropped").health_components == {
        "recency": 0.9333,
        "trend": 0.25,
        "depth": 0.225,
    }


def test_each_signal_is_raised(orgs):
    organizations_scan(app=orgs, now=NOW)

    assert active_signals(orgs) == {
        ("grew", "expansion_candidate"),
        ("dropped", "usage_drop"),
        ("quiet", "inactive"),
        ("gone", "inactive"),  # silent for 90 days: inactive covers every silence of 14 days or more
    }


def test_signals_clear_when_the_condition_no_longer_holds(orgs):
    organizations_scan(app=orgs, now=NOW)

    send(orgs, "quiet", "06-30", 1)  # seen again within 14 days
    send(orgs, "dropped", "06-30", 20)  # back above 70 % of the month before
    send(orgs, "grew", "05-11", 10)  # late events: the month before was as big as this one
    fold_drain()
    organizations_scan(app=orgs, now=NOW)

    assert active_signals(orgs) == {("gone", "inactive")}  # still silent
    assert OrgSignal.objects.filter(cleared_at__isnull=False).count() == 3


def test_a_dismissed_signal_stays_dismissed_until_it_clears_and_is_raised_afresh(orgs, api_client, member):
    api_client.force_login(member)
    base = f"/api/v1/analytics/apps/{orgs.uuid}/organizations"
    organizations_scan(app=orgs, now=NOW)

    # When a member dismisses the usage drop, it is no longer listed, even after another scan
    response = api_client.post(f"{base}/dropped/signals/usage_drop/dismiss")
    assert response.status_code == 200
    organizations_scan(app=orgs, now=NOW)
    listed = api_client.get(base, {"signal": "usage_drop", "from": "2026-06-01", "to": "2026-06-30"}).json()
    assert listed["organizations"] == []

    # When it clears (usage back up) and, a month later, drops again, it is a new, visible signal
    send(orgs, "dropped", "06-30", 20)
    fold_drain()
    organizations_scan(app=orgs, now=NOW)
    assert ("dropped", "usage_drop") not in active_signals(orgs)
    send(orgs, "dropped", "07-05", 20)  # 45 events 06-12..07-11, then 5 in 07-12..08-10: -89 %
    send(orgs, "dropped", "08-01", 5)
    fold_drain()
    organizations_scan(app=orgs, now=datetime.fromisoformat("2026-08-10T12:00:00+00:00"))
    listed = api_client.get(base, {"signal": "usage_drop", "from": "2026-07-01", "to": "2026-08-10"}).json()
    dropped = next(o for o in listed["organizations"] if o["customer_org_id"] == "dropped")
    assert "usage_drop" in [s["signal"] for s in dropped["signals"]]


def test_dismissing_an_inactive_signal_is_404(orgs, api_client, member):
    api_client.force_login(member)
    response = api_client.post(f"/api/v1/analytics/apps/{orgs.uuid}/organizations/grew/signals/usage_drop/dismiss")
    assert response.status_code == 404


def test_bucket_filter(orgs, api_client, member):
    organizations_scan(app=orgs, now=NOW)
    api_client.force_login(member)

    body = api_client.get(f"/api/v1/analytics/apps/{orgs.uuid}/organizations", {"bucket": "watch"}).json()

    assert sorted(o["customer_org_id"] for o in body["organizations"]) == ["quiet"]  # dropped 75 %: at_risk


def test_orgs_beyond_orgs_max_are_tracked_and_flagged(application):
    application.company.orgs_max_override = 2
    application.company.save()
    for i, org in enumerate(["first", "second", "third"]):
        send(application, org, f"06-{10 + i}", 1)
    fold_drain()

    organizations_scan(app=application, now=NOW)

    flags = dict(Organization.objects.values_list("customer_org_id", "over_limit"))
    assert flags == {"first": False, "second": False, "third": True}


def test_a_fold_schedules_one_debounced_scan_per_app(application, settings):
    settings.ANALYTICS_SCAN_DEBOUNCE_SECONDS = 30
    from analytics.tasks import fold_pending

    send(application, "acme", "06-10", 2)
    fold_pending.apply()
    send(application, "acme", "06-11", 2)
    fold_pending.apply()

    # one scan key for the app, alive for the debounce period: the second fold scheduled nothing new
    ttl = get_redis().ttl(f"analytics:scan:{application.id}")
    assert 0 < ttl <= 30


def test_the_daily_scan_and_the_fold_are_scheduled():
    tasks = {e["task"] for e in celery_app.conf.beat_schedule.values()}
    assert {"analytics.fold_pending", "analytics.scan_daily"} <= tasks


def test_the_scan_task_rescans_an_app(orgs):
    from analytics.tasks import scan_app

    result = scan_app.apply(args=[orgs.id]).get()

    assert result["orgs"] == 4
    assert Organization.objects.filter(scanned_at__isnull=True).count() == 0


def test_another_companys_orgs_do_not_count_against_the_limit(application):
    other = CompanyFactory()
    application.company.orgs_max_override = 1
    application.company.save()
    send(application, "mine", "06-10", 1)
    from tests.factories import ApplicationFactory

    send(ApplicationFactory(company=other), "theirs", "06-09", 1)
    fold_drain()

    organizations_scan(app=application, now=NOW)

    assert Organization.objects.get(customer_org_id="mine").over_limit is False


def test_a_scan_task_rescores_one_chunk_and_queues_the_next_on_the_scans_queue(orgs, settings):
    # Issue 18 item 4: no tenant holds the scans worker for its whole scan; folds have their own queue.
    from analytics.tasks import scan_app

    settings.ANALYTICS_SCAN_CHUNK_ORGS = 3
    redis = celery_app.connection_for_write().default_channel.client
    redis.delete("scans")

    first = scan_app.apply(args=[orgs.id]).get()

    assert first["orgs"] == 3
    assert first["next_after"] is not None
    assert Organization.objects.filter(scanned_at__isnull=True).count() == 1
    assert redis.llen("scans") == 1  # the rest of the app waits its turn behind other apps' scans
    second = scan_app.apply(args=[orgs.id, first["next_after"]]).get()
    assert (second["orgs"], second["next_after"]) == (1, None)
    assert Organization.objects.filter(scanned_at__isnull=True).count() == 0
    assert redis.llen("scans") == 1
    redis.delete("scans")
