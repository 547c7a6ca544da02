"""The analytics admin as each role: personal keys shown once and revocable, features per company, rollup lag."""

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from analytics.fold import fold_drain
from analytics.models import Feature, PersonalApiKey
from apps_registry.admin_scoping import SUPPORT_GROUP
from tests.factories import ApplicationFactory, EventFactory, MembershipFactory, PersonalApiKeyFactory, UserFactory

pytestmark = pytest.mark.django_db

KEYS = "admin:analytics_personalapikey_changelist"
ADD_KEY = "admin:analytics_personalapikey_add"


def test_a_staff_member_creates_a_key_shown_once_that_reads_the_api(client, application):
    user = MembershipFactory(company=application.company, role="member", user__is_staff=True).user
    client.force_login(user)

    page = client.post(reverse(ADD_KEY), {"name": "ci"}).content.decode()

    raw = re.search(r'<code id="personal-key">([^<]+)</code>', page).group(1)
    key = PersonalApiKey.objects.get()
    assert (key.user, key.name) == (user, "ci")
    assert raw not in client.get(reverse(KEYS)).content.decode()  # only the prefix from now on
    client.logout()
    response = client.get("/api/v1/analytics/apps/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert [a["uuid"] for a in response.json()["apps"]] == [str(application.uuid)]


def test_an_account_admin_sees_and_revokes_keys_of_their_company_only(client, application, outsider):
    mine = PersonalApiKeyFactory(user=MembershipFactory(company=application.company, role="member").user)
    theirs = PersonalApiKeyFactory(user=outsider)
    client.force_login(MembershipFactory(company=application.company, role="admin").user)

    body = client.get(reverse(KEYS)).content.decode()
    assert mine.prefix in body
    assert theirs.prefix not in body

    client.post(reverse(KEYS), {"action": "revoke_selected", "_selected_action": [mine.pk, theirs.pk]})
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None
    assert theirs.revoked_at is None


def test_a_plain_member_sees_only_their_own_keys(client, application):
    me = MembershipFactory(company=application.company, role="member").user
    colleague = MembershipFactory(company=application.company, role="member").user
    own, other = PersonalApiKeyFactory(user=me), PersonalApiKeyFactory(user=colleague)
    client.force_login(me)

    body = client.get(reverse(KEYS)).content.decode()

    assert own.prefix in body
    assert other.prefix not in body


def test_support_reads_keys_but_cannot_create_or_revoke(client, application):
    key = PersonalApiKeyFactory(user=MembershipFactory(company=application.company).user)
    support = UserFactory()
    support.groups.add(Group.objects.get_or_create(name=SUPPORT_GROUP)[0])
    client.force_login(support)

    assert key.prefix in client.get(reverse(KEYS)).content.decode()
    assert client.get(reverse(ADD_KEY)).status_code == 403
    client.post(reverse(KEYS), {"action": "revoke_selected", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is None


def test_account_admins_manage_features_of_their_own_company_only(client, application, outsider):
    other_app = ApplicationFactory()
    Feature.objects.create(application=other_app, name="theirs", events=["x"])
    client.force_login(MembershipFactory(company=application.company, role="owner").user)

    response = client.post(
        reverse("admin:analytics_feature_add"),
        {"application": application.pk, "name": "reports", "events": "report_run", "path_prefixes": "/reports"},
    )
    refused = client.post(
        reverse("admin:analytics_feature_add"), {"application": other_app.pk, "name": "sneaky", "events": "x"}
    )

    assert response.status_code == 302
    feature = Feature.objects.get(name="reports")
    assert (feature.events, feature.path_prefixes) == (["report_run"], ["/reports"])
    assert refused.status_code == 200  # the form refuses another company's app
    assert not Feature.objects.filter(name="sneaky").exists()
    assert "theirs" not in client.get(reverse("admin:analytics_feature_changelist")).content.decode()


def test_event_list_shows_rollup_lag_beside_export_lag(client):
    EventFactory(received_at=timezone.now() - dt.timedelta(seconds=300))
    client.force_login(UserFactory(is_superuser=True))

    body = client.get(reverse("admin:ingest_event_changelist")).content.decode()
    assert re.search(r'Rollup lag: <strong class="rollup-lag">3\d\ds</strong>', body)

    fold_drain()
    body = client.get(reverse("admin:ingest_event_changelist")).content.decode()
    assert 'Rollup lag: <strong class="rollup-lag">0s</strong>' in body
