"""The admin shows export lag and dead letters, and lets the right people retry dead letters."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from ingest.models import Event, ExportState
from tests.export_ledger import state_of
from tests.factories import EventFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:ingest_event_changelist"


def _retry(client, ids):
    return client.post(
        reverse(CHANGELIST), {"action": "retry_export", "_selected_action": [str(i) for i in ids]}, follow=True
    )


def test_changelist_shows_export_lag_and_dead_letters(client, settings):
    # Given export is on, a pending row received two minutes ago and a dead letter
    settings.BIGQUERY_PROJECT = "acme-analytics"
    EventFactory(received_at=timezone.now() - dt.timedelta(seconds=120))
    EventFactory(export_state=ExportState.DEAD, export_error="invalid: occurred_at")
    client.force_login(UserFactory(is_superuser=True))

    # When the superuser opens the events list
    body = client.get(reverse(CHANGELIST)).content.decode()

    # Then lag and dead-letter count are visible
    assert "Export lag: <strong>12" in body
    assert "Dead letters:" in body
    assert "<strong>1</strong>" in body


def test_lag_counts_rows_being_sent(client, settings):
    # Given export is on and the only rows owed have been SENDING for 90 s (a stuck insert call)
    settings.BIGQUERY_PROJECT = "acme-analytics"
    EventFactory.create_batch(
        3, received_at=timezone.now() - dt.timedelta(seconds=90), export_state=ExportState.SENDING
    )
    EventFactory(export_state=ExportState.EXPORTED, received_at=timezone.now() - dt.timedelta(hours=1))
    client.force_login(UserFactory(is_superuser=True))

    # When the superuser opens the events list
    body = client.get(reverse(CHANGELIST)).content.decode()

    # Then the lag is their age, not 0
    assert "Export lag: <strong>9" in body
    assert "Export lag: <strong>0s" not in body


def test_with_export_off_the_list_says_so_instead_of_a_lag(client, settings):
    # Given no BigQuery project (export off) and a row pending for an hour
    settings.BIGQUERY_PROJECT = ""
    EventFactory(received_at=timezone.now() - dt.timedelta(hours=1))
    client.force_login(UserFactory(is_superuser=True))

    # When the superuser opens the events list
    body = client.get(reverse(CHANGELIST)).content.decode()

    # Then it says export is off, and shows no lag that would grow forever
    assert "Export to BigQuery: <strong>off</strong>" in body
    assert "Export lag" not in body


def test_account_admin_retries_own_dead_letters_only(client):
    # Given dead letters in two companies and an account admin of the first
    mine = EventFactory(export_state=ExportState.DEAD, export_error="bad")
    theirs = EventFactory(export_state=ExportState.DEAD, export_error="bad")
    exported = EventFactory(application=mine.application, export_state=ExportState.EXPORTED)
    membership = MembershipFactory(company=mine.company)
    client.force_login(membership.user)

    # When they retry everything they can select, and try the other company's row too
    response = _retry(client, [mine.id, theirs.id, exported.id])

    # Then only their dead letter is back to pending; the rest is untouched
    assert response.status_code == 200
    assert state_of(mine) == ExportState.PENDING
    assert Event.objects.get(id=mine.id).export_error == ""
    assert state_of(theirs) == ExportState.DEAD
    assert state_of(exported) == ExportState.EXPORTED


def test_support_staff_see_rows_but_cannot_retry(client):
    # Given a support user and a dead letter
    dead = EventFactory(export_state=ExportState.DEAD)
    user = UserFactory()
    user.groups.add(Group.objects.get_or_create(name="Support")[0])
    client.force_login(user)

    # When they open the list and try the action
    listing = client.get(reverse(CHANGELIST))
    _retry(client, [dead.id])

    # Then they see the row, and it stays dead
    assert listing.status_code == 200
    assert "retry_export" not in listing.content.decode()
    assert state_of(dead) == ExportState.DEAD


def test_the_list_shows_each_rows_export_state_from_the_ledger(client):
    # Given rows exported, being sent, pending and dead (only the dead one says so on the row)
    exported = EventFactory(event="was_exported", export_state=ExportState.EXPORTED)
    sending = EventFactory(event="being_sent", export_state=ExportState.SENDING)
    pending = EventFactory(event="still_pending")
    dead = EventFactory(event="was_rejected", export_state=ExportState.DEAD)
    client.force_login(UserFactory(is_superuser=True))

    # When the superuser lists them, and filters by state
    listed = client.get(reverse(CHANGELIST)).context["cl"].result_list
    by_state = {
        state: [
            e.pk
            for e in client.get(reverse(CHANGELIST), {"export_state__exact": str(int(state))}).context["cl"].result_list
        ]
        for state in (ExportState.EXPORTED, ExportState.SENDING, ExportState.PENDING, ExportState.DEAD)
    }

    # Then each row shows its state, and each filter lists exactly its rows
    assert {e.pk: ExportState(e.export_status) for e in listed} == {
        exported.pk: ExportState.EXPORTED,
        sending.pk: ExportState.SENDING,
        pending.pk: ExportState.PENDING,
        dead.pk: ExportState.DEAD,
    }
    assert by_state == {
        ExportState.EXPORTED: [exported.pk],
        ExportState.SENDING: [sending.pk],
        ExportState.PENDING: [pending.pk],
        ExportState.DEAD: [dead.pk],
    }
