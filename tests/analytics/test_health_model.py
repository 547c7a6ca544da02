"""The issue-19 health model on the hand-built 30-org scenario: bucket and first reason per behaviour,
on the default model and through a tuned one (see health_scenario.py for the event histories)."""

import pytest

from analytics.health import organizations_scan
from analytics.models import HealthModel, Organization, OrgSignal
from tests.analytics import health_scenario as sc

pytestmark = pytest.mark.django_db
MINUS = "\u2212"  # reasons print a real minus sign


@pytest.fixture
def scenario(application):
    return application, sc.build(application)


def _by_org(app) -> dict[str, Organization]:
    return {o.customer_org_id: o for o in Organization.objects.filter(application=app)}


def test_each_behaviour_lands_in_its_bucket_with_its_first_reason(scenario):
    app, orgs = scenario

    organizations_scan(app=app, now=sc.NOW)

    scored = _by_org(app)
    assert len(scored) == 30
    for org, group in orgs.items():
        o = scored[org]
        assert (group, o.health_bucket) == (group, sc.EXPECTED_BUCKET[group]), org
        assert (group, o.health_reasons[0]["code"]) == (group, sc.EXPECTED_FIRST_REASON[group]), org
    assert sum(o.health_bucket == "at_risk" for o in scored.values()) == 8


def test_the_reasons_say_it_in_words_and_figures(scenario):
    app, _ = scenario
    organizations_scan(app=app, now=sc.NOW)
    scored = _by_org(app)

    assert scored["drop75-0"].health_reasons[0] == {
        "code": "usage_drop",
        "text": f"events {MINUS}75 % vs the previous 30 days (150 vs 600)",
    }
    assert scored["drop60-0"].health_reasons[0]["text"] == f"events {MINUS}60 % vs the previous 30 days (240 vs 600)"
    assert scored["silent-0"].health_reasons[0] == {"code": "silent", "text": "no activity for 19 days"}
    assert scored["gone-0"].health_reasons[0] == {"code": "inactive", "text": "no activity for 50 days"}
    assert scored["growing-0"].health_reasons[0]["text"] == "events +100 % vs the previous 30 days (360 vs 180)"
    assert {"code": "broad", "text": "uses 4 of 4 features"} in scored["steady-0"].health_reasons
    assert scored["new-2"].health_reasons[0]["text"] == "new: first seen today; a verdict from day 14"


def test_a_collapse_is_not_hidden_by_breadth_and_depth(scenario):
    # The example: recency, breadth and depth stay high while usage collapses.
    app, _ = scenario
    organizations_scan(app=app, now=sc.NOW)
    dropped = Organization.objects.get(application=app, customer_org_id="drop75-0")

    assert dropped.health_components["breadth"] == 1
    assert dropped.health_components["depth"] == 1
    assert dropped.health_components["recency"] == 1
    assert dropped.health_score <= 39
    steady = Organization.objects.get(application=app, customer_org_id="steady-0")
    assert steady.health_score == 100


def test_a_new_org_has_components_but_no_score_or_verdict(scenario):
    app, _ = scenario
    organizations_scan(app=app, now=sc.NOW)
    brand_new = Organization.objects.get(application=app, customer_org_id="new-2")

    assert brand_new.health_bucket == "new"
    assert brand_new.health_score is None
    assert set(brand_new.health_components) == {"recency", "trend", "breadth", "depth"}


def test_signals_follow_the_new_rules_with_their_magnitude(scenario):
    app, _ = scenario
    organizations_scan(app=app, now=sc.NOW)
    active = {
        (s.customer_org_id, s.kind): s.detail
        for s in OrgSignal.objects.filter(application=app, cleared_at__isnull=True)
    }

    # gone for 50 days: inactive (no longer capped at 44 days), and no usage_drop
    assert active[("gone-0", "inactive")] == {"days": 50}
    assert ("gone-0", "usage_drop") not in active
    assert active[("drop75-0", "usage_drop")] == {"before": 600, "after": 150, "change": -0.75}
    assert active[("silent-0", "inactive")] == {"days": 19}
    assert active[("growing-0", "expansion_candidate")] == {"before": 180, "after": 360, "change": 1.0}
    assert not any(org.startswith("steady") for org, _ in active)


def test_the_same_scenarios_through_a_tuned_model(scenario):
    # Given an app that calls a 55 % drop at risk, keeps orgs new for 2 days only, counts one feature
    app, orgs = scenario
    HealthModel.objects.create(
        application=app, config={"drop_at_risk_pct": 55, "new_days": 2, "features": ["report_run"]}
    )

    organizations_scan(app=app, now=sc.NOW)

    scored = _by_org(app)
    expected = {**sc.EXPECTED_BUCKET, "drop60": "at_risk"}
    for org, group in orgs.items():
        if group == "new":
            continue
        assert (org, scored[org].health_bucket) == (org, expected[group])
    assert scored["new-0"].health_bucket != "new"  # first seen 3 days ago: past the tuned period
    assert scored["new-2"].health_bucket == "new"
    assert {"code": "broad", "text": "uses 1 of 1 feature"} in scored["steady-0"].health_reasons


def test_an_org_moves_between_buckets_over_days_and_keeps_its_history(application):
    # Given an org used daily for 40 days, then silent: scanned each day from day 0 to day 20 of silence
    from datetime import timedelta

    from analytics.models import OrgHealthDay
    from ingest.models import Event

    rows = []
    for offset in range(20, 61):
        rows += sc.events_on(application, "acme", sc.day(offset), 12)
    Event.objects.bulk_create(rows)
    from analytics.fold import fold_drain

    fold_drain()
    for back in range(20, -1, -1):
        organizations_scan(app=application, now=sc.NOW - timedelta(days=back))

    history = list(
        OrgHealthDay.objects.filter(application=application, customer_org_id="acme")
        .order_by("day")
        .values_list("day", "bucket")
    )
    assert len(history) == 21
    buckets = [b for _, b in history]
    # healthy while the silence is short, at_risk from its 14th day (last event on day -20)
    assert buckets == ["healthy"] * 14 + ["at_risk"] * 7
    moved_on = next(d for d, b in history if b == "at_risk")
    assert moved_on == sc.day(6)
    org = Organization.objects.get(application=application, customer_org_id="acme")
    assert {"code": "moved", "text": f"moved to at_risk on {moved_on.isoformat()} (from healthy)"} in org.health_reasons


def _facts(**kw):
    from analytics.health import Facts

    base = dict(
        org="o",
        days_since_first=60,
        days_since_seen=0,
        last30=300,
        prev30=300,
        active_days=60,
        users30=5,
        sessions30=40,
        features_used=4,
        features_total=4,
    )
    return Facts(**{**base, **kw})


@pytest.mark.parametrize(
    ("facts", "bucket", "first"),
    [
        ({"last30": 93, "prev30": 300}, "watch", "usage_drop"),  # -69 %: at most watch, not at_risk
        ({"last30": 90, "prev30": 300}, "at_risk", "usage_drop"),  # -70 %
        ({"last30": 5, "prev30": 9}, "healthy", "usage_down"),  # < 10 events before: not counted as a drop
        ({"days_since_first": 9, "active_days": 9}, "new", "new"),
        ({"days_since_first": 9, "active_days": 10}, "healthy", "steady"),  # enough history: leaves `new` early
        ({"days_since_first": 14, "active_days": 2}, "healthy", "steady"),  # day 14: leaves `new`
        ({"users30": 1, "sessions30": 1, "features_used": 0}, "watch", "breadth"),  # narrow, shallow, steady
        ({"days_since_seen": 13}, "healthy", "steady"),
        ({"days_since_seen": 14, "last30": 160}, "at_risk", "silent"),
        ({"days_since_seen": 14, "last30": 160, "active_days": 2}, "watch", "silent"),  # no regular use: no cap
        ({"days_since_seen": 30, "last30": 0}, "inactive", "inactive"),
    ],
)
def test_the_rules_at_their_boundaries(facts, bucket, first):
    from analytics.health import health_evaluate, model_defaults

    verdict = health_evaluate(_facts(**facts), model_defaults())

    assert (verdict.bucket, verdict.reasons[0]["code"]) == (bucket, first)
