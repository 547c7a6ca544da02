"""Revenue-aware signals, their priority order, and one `signal.raised` per activation to a real receiver."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from analytics.health import organizations_scan
from analytics.models import OrgSignal
from analytics.signals import revenue_signals_scan, signal_priority, signals_list
from tests.factories import OrganizationFactory, OrgSignalFactory
from tests.webhooks.conftest import run_worker_once, verify
from webhooks.models import WebhookMessage
from webhooks.services import endpoint_create

from .conftest import import_orgs, import_subs

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True


def seen(app, org: str, score: int | None, last_seen: datetime) -> None:
    OrganizationFactory(
        application=app,
        customer_org_id=org,
        health_score=score,
        health_bucket="" if score is None else ("at_risk" if score < 40 else "healthy"),
        first_seen=datetime(2026, 1, 1, tzinfo=UTC),
        last_seen=last_seen,
    )


def pay(app, *rows: tuple[str, str]) -> None:
    text = "external_org_id,product_code,mrr,currency,start_at\n" + "".join(
        f"{org},pro,{mrr},EUR,2025-01-01\n" for org, mrr in rows
    )
    assert import_subs(app, text, now=NOW)["status"] == "applied"


def active(app) -> set[tuple[str, str]]:
    return set(
        OrgSignal.objects.filter(application=app, cleared_at__isnull=True).values_list("customer_org_id", "kind")
    )


def test_each_revenue_signal_type(application):
    pay(application, ("p1", "500"), ("p3", "1000"), ("p4", "10"), ("p5", "100"), ("p6", "100"))
    seen(application, "p1", 30, NOW - timedelta(days=1))  # paying, health < 40
    seen(application, "p4", 80, datetime(2026, 5, 20, tzinfo=UTC))  # paying, quiet 26 days
    seen(application, "p5", 80, datetime(2026, 6, 2, 8, tzinfo=UTC))  # 06-02 is within the last 14 days
    seen(application, "p6", 80, datetime(2026, 6, 1, 23, tzinfo=UTC))  # 06-01 is not
    seen(application, "n1", 20, NOW)  # at risk, but not paying
    revenue_signals_scan(app=application, now=NOW)
    assert active(application) == {
        ("p1", "revenue_at_risk"),
        ("p3", "inactive_paying"),  # paying, never seen
        ("p4", "inactive_paying"),
        ("p6", "inactive_paying"),
    }


def test_priority_formula_and_order(application):
    pay(application, ("p1", "500"), ("p2", "50"), ("p3", "1000"), ("p4", "10"), ("p6", "100"), ("p7", "5"))
    seen(application, "p1", 30, NOW)
    seen(application, "p2", 20, NOW)
    seen(application, "p4", 80, datetime(2026, 5, 20, tzinfo=UTC))
    seen(application, "p6", 80, datetime(2026, 6, 1, tzinfo=UTC))
    seen(application, "p7", 80, NOW)
    seen(application, "n2", 80, NOW)
    for org in ("p7", "n2"):
        OrgSignalFactory(application=application, customer_org_id=org, kind="usage_drop", active_since=NOW)
    revenue_signals_scan(app=application, now=NOW)
    body = signals_list(app=application, now=NOW)
    # weight × (1 + log10(1 + MRR)): 5 × (1 + log10 501) = 18.50, 4 × (1 + log10 1001) = 16.00,
    # 5 × (1 + log10 51) = 13.54, 4 × (1 + log10 101) = 12.02, 4 × (1 + log10 11) = 8.17,
    # 3 × (1 + log10 6) = 5.33, and the same usage_drop without revenue: 3 × 1 = 3.00
    assert [(o["customer_org_id"], o["priority"]) for o in body["orgs"]] == [
        ("p1", 18.5),
        ("p3", 16.0),
        ("p2", 13.54),
        ("p6", 12.02),
        ("p4", 8.17),
        ("p7", 5.33),
        ("n2", 3.0),
    ]
    first = body["orgs"][0]
    assert first["signals"] == [{"type": "revenue_at_risk", "since": NOW, "dismissed": False}]
    assert (first["mrr"], first["health"]) == ("500.00", {"score": 30, "bucket": "at_risk"})
    # MRR at risk: every org with a risk signal (all of them but none is expansion here)
    assert body["summary"] == {"orgs": 7, "mrr_at_risk": "1665.00", "expansion_mrr": "0.00"}


def test_priority_is_monotonic_in_mrr_and_counts_signals():
    assert signal_priority(kinds=["usage_drop"], mrr=0) == 3.0
    assert signal_priority(kinds=["usage_drop"], mrr=1) < signal_priority(kinds=["usage_drop"], mrr=2)
    assert signal_priority(kinds=["usage_drop", "inactive"], mrr=0) == 5.0


def test_cleared_when_no_longer_true(application):
    pay(application, ("p1", "500"))
    seen(application, "p1", 30, NOW)
    revenue_signals_scan(app=application, now=NOW)
    pay(application)  # a new snapshot: no subscriptions any more
    revenue_signals_scan(app=application, now=NOW + timedelta(hours=1))
    assert active(application) == set()


def test_signal_raised_once_per_activation_to_a_real_receiver(application, receiver):
    created = endpoint_create(company=application.company, url=receiver.url, event_types=["signal.raised"])
    pay(application, ("p1", "500"))
    import_orgs(application, "external_org_id,display_name\np1,Pied Piper\n")
    seen(application, "p1", 30, NOW)

    revenue_signals_scan(app=application, now=NOW)
    revenue_signals_scan(app=application, now=NOW + timedelta(minutes=5))  # still active: not raised again
    run_worker_once()
    assert len(receiver.requests) == 1
    payload = verify(created.secret, receiver.requests[0])
    assert payload["type"] == "signal.raised"
    assert payload["data"] == {
        "app_uuid": str(application.uuid),
        "customer_org_id": "p1",
        "display_name": "Pied Piper",
        "signal": "revenue_at_risk",
        "active_since": "2026-06-15T12:00:00Z",
        "priority": 18.5,
        "mrr": "500.00",
        "currency": "EUR",
        "health": {"score": 30, "bucket": "at_risk"},
    }

    # It clears (health recovers), then is raised again: a new activation, a second webhook.
    from analytics.models import Organization

    Organization.objects.filter(customer_org_id="p1").update(health_score=80)
    revenue_signals_scan(app=application, now=NOW + timedelta(days=1))
    Organization.objects.filter(customer_org_id="p1").update(health_score=25)
    revenue_signals_scan(app=application, now=NOW + timedelta(days=2))
    run_worker_once()
    assert len(receiver.requests) == 2
    assert verify(created.secret, receiver.requests[1])["data"]["active_since"] == "2026-06-17T12:00:00Z"
    assert WebhookMessage.objects.filter(event_type="signal.raised").count() == 2


def test_usage_signals_raised_by_the_health_scan_are_notified_too(application, receiver):
    """The health scan's own signals (here `inactive`: events 20 days ago, none since) go out as well."""
    from analytics.models import ALL_ENVIRONMENTS, OrgDay

    created = endpoint_create(company=application.company, url=receiver.url, event_types=["signal.raised"])
    now = timezone.now()
    OrganizationFactory(application=application, customer_org_id="quiet", last_seen=now - timedelta(days=20))
    OrgDay.objects.create(
        application=application,
        environment=ALL_ENVIRONMENTS,
        day=(now - timedelta(days=20)).date(),
        customer_org_id="quiet",
        events=5,
    )
    organizations_scan(app=application, now=now)
    organizations_scan(app=application, now=now + timedelta(minutes=1))
    run_worker_once()
    assert [verify(created.secret, r)["data"]["signal"] for r in receiver.requests] == ["inactive"]


def test_an_endpoint_not_subscribed_gets_nothing(application, receiver):
    endpoint_create(company=application.company, url=receiver.url, event_types=["onboarding.started"])
    pay(application, ("p1", "500"))
    seen(application, "p1", 30, NOW)
    revenue_signals_scan(app=application, now=NOW)
    run_worker_once()
    assert receiver.requests == []
