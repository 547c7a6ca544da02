"""The auto-tracked catalogue: what the SDKs send on their own, and custom names beside it."""

from apps_registry.webhook_events import EVENT_TRIGGERS
from ingest.catalogue import AUTO_TRACKED_EVENTS, event_is_auto_tracked


def test_catalogue_holds_the_documented_families():
    assert len(AUTO_TRACKED_EVENTS) == 30
    for name in ("session_start", "push_tapped", "purchase_pending", "restore_completed", "survey_dismissed"):
        assert event_is_auto_tracked(event_name=name)
    assert event_is_auto_tracked(event_name="deferred_deep_link_resolved")


def test_custom_names_are_not_in_the_catalogue():
    assert not event_is_auto_tracked(event_name="level_up")
    assert not event_is_auto_tracked(event_name="Session_Start")


def test_every_webhook_trigger_is_an_auto_tracked_event():
    assert set(EVENT_TRIGGERS) <= AUTO_TRACKED_EVENTS
