"""Effective limits; usage counted by the analytics fold, exactly once, never decreasing; overage flagged once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.fold import fold_drain
from apps_registry.models import Plan, Usage
from apps_registry.selectors import month_start
from apps_registry.tasks import usage_refresh_task
from ingest.models import Event, ExportState
from ingest.services.retention import retention_apply
from saastracker.celery import app as celery_app
from tests.factories import ApplicationFactory, CompanyFactory, EventFactory, SdkEventFactory

pytestmark = pytest.mark.django_db


def test_effective_limit_is_the_override_else_the_plan():
    company = CompanyFactory(plan=Plan.objects.get(tier=Plan.Tier.STARTER))
    assert (company.events_per_month, company.apps_max) == (1_000_000, 3)

    company.events_per_month_override = 42
    company.apps_max_override = 0

    assert (company.events_per_month, company.apps_max, company.retention_days) == (42, 0, 90)


def test_the_fold_counts_both_protocols_and_flags_overage_once():
    company = CompanyFactory(events_per_month_override=3)
    app = ApplicationFactory(company=company)
    EventFactory.create_batch(2, application=app)
    SdkEventFactory(application=app, consent_analytics=False)  # billed even without analytics consent

    fold_drain()
    usage = Usage.objects.get(company=company, month=month_start())
    assert (usage.event_count, usage.overage_at) == (3, None)

    EventFactory(application=app)
    fold_drain()
    usage.refresh_from_db()
    first_flag = usage.overage_at
    assert usage.event_count == 4
    assert first_flag is not None

    EventFactory(application=app)
    fold_drain()
    fold_drain()  # a re-run counts nothing twice
    usage.refresh_from_db()
    assert usage.event_count == 5
    assert usage.overage_at == first_flag  # set the first time only


def test_usage_counts_by_receive_time_month():
    app = ApplicationFactory()
    EventFactory(application=app, received_at=timezone.now().replace(day=1) - timedelta(days=1))

    fold_drain()

    assert not Usage.objects.filter(company=app.company, month=month_start(), event_count__gt=0).exists()
    assert Usage.objects.get(company=app.company).event_count == 1


def test_usage_never_decreases_when_retention_deletes_rows():
    company = CompanyFactory(retention_days_override=1)
    app = ApplicationFactory(company=company)
    now = timezone.now()
    EventFactory.create_batch(
        3, application=app, received_at=now - timedelta(days=2), export_state=ExportState.EXPORTED
    )
    fold_drain()

    retention_apply(now=now)
    fold_drain()
    usage_refresh_task.apply()

    assert Event.objects.count() == 0
    assert Usage.objects.get(company=company).event_count == 3


def test_the_usage_refresh_flags_a_limit_lowered_after_counting():
    company = CompanyFactory()
    app = ApplicationFactory(company=company)
    EventFactory.create_batch(2, application=app)
    fold_drain()
    company.events_per_month_override = 1
    company.save()

    usage_refresh_task.apply()

    assert Usage.objects.get(company=company, month=month_start()).overage_at is not None


def test_usage_refresh_is_scheduled_every_minute():
    entries = [e for e in celery_app.conf.beat_schedule.values() if e["task"] == "apps_registry.usage_refresh"]
    assert len(entries) == 1
    assert entries[0]["schedule"] == 60.0
