"""Retention: settled, folded rows past the company's retention go; unsettled, unfolded and recent ones stay."""

import datetime as dt

import pytest
from django.utils import timezone

from analytics.fold import enqueue
from analytics.models import FoldQueue
from ingest.models import Event, ExportState, IdempotencyKey, IdentifyLink, SdkEvent
from ingest.services.retention import retention_apply
from ingest.tasks import retention
from tests.factories import ApplicationFactory, CompanyFactory, EventFactory, IdentifyLinkFactory, SdkEventFactory

pytestmark = pytest.mark.django_db


def test_settled_rows_older_than_the_companys_retention_are_deleted():
    # Given a company keeping 30 days (override) and one on its plan's 365 days
    now = timezone.now()
    short = ApplicationFactory(company=CompanyFactory(retention_days_override=30))
    long = ApplicationFactory(company=CompanyFactory())
    old = now - dt.timedelta(days=40)
    gone = [
        EventFactory(application=short, received_at=old, export_state=ExportState.EXPORTED),
        EventFactory(application=short, received_at=old, export_state=ExportState.EXPORTED),
    ]
    gone_sdk = SdkEventFactory(
        application=short, received_at=old, export_state=ExportState.SKIPPED, consent_analytics=False
    )
    gone_link = IdentifyLinkFactory(application=short, received_at=old, export_state=ExportState.EXPORTED)
    kept = [
        # not yet past retention
        EventFactory(application=short, received_at=now - dt.timedelta(days=20), export_state=ExportState.EXPORTED),
        # still owed to BigQuery, whatever its age
        EventFactory(application=short, received_at=old, export_state=ExportState.PENDING),
        EventFactory(application=short, received_at=old, export_state=ExportState.DEAD),
        EventFactory(application=short, received_at=old, export_state=ExportState.SENDING),
        # another company, longer retention
        EventFactory(application=long, received_at=old, export_state=ExportState.EXPORTED),
    ]
    # (every row above has been folded into the analytics rollups: queued, and the queue taken)
    enqueue()
    FoldQueue.objects.all().delete()
    # not yet folded into the analytics rollups, whatever its age and export state
    kept.append(EventFactory(application=short, received_at=old, export_state=ExportState.EXPORTED))
    unfolded_sdk = SdkEventFactory(application=short, received_at=old, export_state=ExportState.EXPORTED)

    # When retention runs (in batches smaller than the work)
    counts = retention_apply(now=now, batch_size=1)

    # Then exactly the settled old rows of the short-retention company are gone
    assert counts["events"] == 2
    assert counts["sdk_events"] == 1
    assert counts["identify_links"] == 1
    assert not Event.objects.filter(id__in=[e.id for e in gone]).exists()
    assert not SdkEvent.objects.filter(id=gone_sdk.id).exists()
    assert not IdentifyLink.objects.filter(id=gone_link.id).exists()
    assert set(Event.objects.values_list("id", flat=True)) == {e.id for e in kept}
    assert SdkEvent.objects.filter(id=unfolded_sdk.id).exists()


def test_idempotency_keys_expire_after_their_ttl(settings):
    # Given keys older and younger than the TTL
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 3600
    app = ApplicationFactory()
    now = timezone.now()
    IdempotencyKey.objects.create(
        application=app, key="old", event_id=EventFactory().event_id, created_at=now - dt.timedelta(hours=2)
    )
    IdempotencyKey.objects.create(application=app, key="new", event_id=EventFactory().event_id, created_at=now)

    # When the periodic task runs
    result = retention.apply().get()

    # Then only the expired key is gone
    assert result["idempotency_keys"] == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
