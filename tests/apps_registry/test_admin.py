"""The back office, driven through the real admin pages as each role.

Given two companies A and B, an account admin of A, a support user and a superuser, each test
asserts what that person sees or can do in the HTML and what changed in the database.
"""

import hashlib
import hmac
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from apps_registry.admin_scoping import SUPPORT_GROUP
from apps_registry.models import ApiSecret, Application, Company, Plan, SdkKey
from apps_registry.selectors import app_credentials_get, month_start, sdk_key_credentials_get
from apps_registry.services import api_secret_create, sdk_key_create
from tests.factories import (
    ApplicationFactory,
    CompanyFactory,
    MembershipFactory,
    PlanFactory,
    UsageFactory,
    UserFactory,
    WebhookEndpointFactory,
)
from webhooks.models import WebhookEndpoint


@pytest.fixture
def world(db):
    """Two companies with one app each, every app with a secret and an SDK key."""
    plan = Plan.objects.get(tier=Plan.Tier.STARTER)  # seeded after migrate: 1,000,000 events, 3 apps
    a = CompanyFactory(name="Acme Analytics", plan=plan)
    b = CompanyFactory(name="Beta Widgets", plan=plan)
    app_a = ApplicationFactory(company=a, name="Acme Web")
    app_b = ApplicationFactory(company=b, name="Beta Mobile")
    secret_a, secret_b = api_secret_create(application=app_a), api_secret_create(application=app_b)
    key_a, key_b = sdk_key_create(application=app_a), sdk_key_create(application=app_b)
    return {
        "a": a,
        "b": b,
        "app_a": app_a,
        "app_b": app_b,
        "secret_a": secret_a,
        "secret_b": secret_b,
        "key_a": key_a,
        "key_b": key_b,
    }


def _client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def account_admin(world, client):
    membership = MembershipFactory(company=world["a"], role="admin")
    return _client(client, membership.user)


@pytest.fixture
def support(world, client):
    user = UserFactory(username="support1")
    user.groups.add(Group.objects.get_or_create(name=SUPPORT_GROUP)[0])
    return _client(client, user)


@pytest.fixture
def superuser(world, client):
    return _client(client, UserFactory(username="root", is_superuser=True))


def url(name, *args):
    return reverse(f"admin:apps_registry_{name}", args=args)


def text(response) -> str:
    return response.content.decode()


def prefix(key: str) -> str:
    return "_".join(key.split("_", 2)[:2])


# --- Account admins --------------------------------------------------------------------------


def test_account_admin_lists_only_their_company(world, account_admin):
    for name in ("company_changelist", "application_changelist", "apisecret_changelist", "sdkkey_changelist"):
        page = text(account_admin.get(url(name)))
        assert "Acme" in page, name
        assert "Beta" not in page, name


def test_cross_company_url_never_shows_the_object(world, account_admin):
    b, app_b = world["b"], world["app_b"]
    secret_b = ApiSecret.objects.get(application=app_b)
    key_b = SdkKey.objects.get(application=app_b)
    for target in (
        url("company_change", b.pk),
        url("application_change", app_b.pk),
        url("apisecret_change", secret_b.pk),
        url("sdkkey_change", key_b.pk),
        url("application_history", app_b.pk),
        url("application_delete", app_b.pk),
    ):
        response = account_admin.get(target)
        assert response.status_code in (302, 403, 404), target
        assert "Beta Mobile" not in text(response)
    for target in (
        url("application_rotate_secret", app_b.pk),
        url("application_new_sdk_key", app_b.pk),
        url("application_revoke_secret", app_b.pk, secret_b.pk),
        url("application_revoke_sdk_key", app_b.pk, key_b.pk),
    ):
        assert account_admin.post(target, {"expire_old_in_hours": 0}).status_code == 404, target
    # A secret of B through A's own application URL is not found either.
    app_a = world["app_a"]
    assert account_admin.post(url("application_revoke_secret", app_a.pk, secret_b.pk)).status_code == 404
    secret_b.refresh_from_db()
    assert secret_b.revoked_at is None
    assert ApiSecret.objects.filter(application=app_b).count() == 1


def test_search_and_autocomplete_are_scoped(world, account_admin):
    page = text(account_admin.get(url("application_changelist"), {"q": str(world["app_b"].uuid)}))
    assert "Beta Mobile" not in page
    assert "0 applications" in page or "0 results" in page

    response = account_admin.get(
        reverse("admin:autocomplete"),
        {"app_label": "apps_registry", "model_name": "application", "field_name": "company", "term": ""},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Acme Analytics"]


def test_account_admin_cannot_change_plan_or_limits(world, account_admin):
    a, growth = world["a"], PlanFactory(tier=Plan.Tier.GROWTH)
    page = text(account_admin.get(url("company_change", a.pk)))
    assert 'name="plan"' not in page
    assert 'name="events_per_month_override"' not in page

    account_admin.post(
        url("company_change", a.pk),
        {
            "name": "Acme Renamed",
            "plan": growth.pk,
            "events_per_month_override": 999_999_999,
            "applications-TOTAL_FORMS": 0,
            "applications-INITIAL_FORMS": 0,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )

    a.refresh_from_db()
    assert a.name == "Acme Renamed"
    assert a.plan.tier == Plan.Tier.STARTER
    assert a.events_per_month_override is None


def test_creating_an_application_shows_its_credentials_once(world, account_admin):
    response = account_admin.post(
        url("application_add"), {"company": world["a"].pk, "name": "Acme iOS", "environments": "", "is_active": "on"}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = text(response)
    secret = re.search(r'id="api-secret">([^<]+)<', page).group(1)
    key = re.search(r'id="sdk-key">([^<]+)<', page).group(1)
    app = Application.objects.get(name="Acme iOS")
    assert app.company == world["a"]
    # The secret really signs for this app and the key really authenticates it.
    body = b'{"event":"x"}'
    signature = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    live = app_credentials_get(app_uuid=app.uuid).live_secrets(timezone.now().timestamp())
    assert any(hmac.compare_digest(hmac.new(s, body, hashlib.sha256).digest(), signature) for s in live)
    assert sdk_key_credentials_get(key=key).app_id == app.pk
    # Afterwards the application page shows neither in full.
    change = text(account_admin.get(url("application_change", app.pk)))
    assert secret not in change
    assert key not in change
    assert f"sts_…{secret[-4:]}" in change
    assert f"{prefix(key)}_…" in change


def test_account_admin_cannot_create_an_app_for_another_company(world, account_admin):
    response = account_admin.post(url("application_add"), {"company": world["b"].pk, "name": "Sneaky"})
    assert response.status_code == 200
    assert "Select a valid choice" in text(response)
    assert not Application.objects.filter(name="Sneaky").exists()


def test_apps_max_refusal_is_shown(world, account_admin):
    world["a"].apps_max_override = 1
    world["a"].save()

    response = account_admin.post(url("application_add"), {"company": world["a"].pk, "name": "One too many"})

    assert response.status_code == 200
    assert "the most its plan allows" in text(response)
    assert not Application.objects.filter(name="One too many").exists()


def test_rotate_shows_new_secret_once_and_old_keeps_working(world, account_admin):
    app = world["app_a"]
    assert account_admin.get(url("application_rotate_secret", app.pk)).status_code == 200

    response = account_admin.post(url("application_rotate_secret", app.pk), {"expire_old_in_hours": 24})

    new_secret = re.search(r'id="api-secret">([^<]+)<', text(response)).group(1)
    live = app_credentials_get(app_uuid=app.uuid).live_secrets(timezone.now().timestamp())
    assert {new_secret.encode(), world["secret_a"].encode()} <= set(live)
    old = ApiSecret.objects.get(application=app, hint=world["secret_a"][-4:])
    assert old.expires_at is not None
    assert new_secret not in text(account_admin.get(url("application_change", app.pk)))


def test_revoke_secret_and_sdk_key(world, account_admin):
    app = world["app_a"]
    secret = ApiSecret.objects.get(application=app)
    key = SdkKey.objects.get(application=app)

    account_admin.post(url("application_revoke_secret", app.pk, secret.pk))
    account_admin.post(url("sdkkey_changelist"), {"action": "revoke_selected", "_selected_action": [key.pk]})

    assert app_credentials_get(app_uuid=app.uuid).live_secrets(timezone.now().timestamp()) == []
    assert not sdk_key_credentials_get(key=world["key_a"]).is_active


def test_new_sdk_key_shown_once(world, account_admin):
    app = world["app_a"]
    page = text(account_admin.post(url("application_new_sdk_key", app.pk)))
    key = re.search(r'id="sdk-key">([^<]+)<', page).group(1)
    assert sdk_key_credentials_get(key=key).app_id == app.pk
    assert SdkKey.objects.filter(application=app).count() == 2


def test_application_page_shows_urls_and_signing_snippet(world, account_admin, settings):
    settings.PUBLIC_INGEST_BASE_URL = "https://receive.example.test"
    page = text(account_admin.get(url("application_change", world["app_a"].pk)))
    assert "https://receive.example.test/v1/events" in page
    assert "https://receive.example.test/api/v1/ingest/events" in page
    assert str(world["app_a"].uuid) in page
    assert "openssl dgst -sha256 -hmac" in page
    assert "hmac.new(secret, body, hashlib.sha256).hexdigest()" in page
    assert world["secret_a"] not in page


def test_member_role_and_non_staff_get_no_back_office(world, client):
    member = MembershipFactory(company=world["a"], role="member").user
    client.force_login(member)
    assert client.get(url("application_changelist")).status_code == 403


# --- Support ---------------------------------------------------------------------------------


def test_support_reads_every_company_but_changes_nothing(world, support):
    page = text(support.get(url("company_changelist")))
    assert "Acme Analytics" in page
    assert "Beta Widgets" in page
    change = text(support.get(url("application_change", world["app_b"].pk)))
    assert "Beta Mobile" in change
    assert 'name="name"' not in change  # read-only page
    assert "Rotate secret" not in change

    assert support.post(url("application_rotate_secret", world["app_b"].pk)).status_code == 403
    assert support.get(url("application_add")).status_code == 403
    support.post(url("application_change", world["app_b"].pk), {"name": "Hacked"})
    world["app_b"].refresh_from_db()
    assert world["app_b"].name == "Beta Mobile"
    assert ApiSecret.objects.filter(application=world["app_b"]).count() == 1


@pytest.mark.parametrize("term", ["Beta", "uuid", "prefix"])
def test_support_search_by_name_uuid_and_key_prefix(world, support, term):
    query = {"Beta": "Beta", "uuid": str(world["app_b"].uuid), "prefix": prefix(world["key_b"])}[term]
    page = text(support.get(url("company_changelist"), {"q": query}))
    assert "Beta Widgets" in page
    assert "Acme Analytics" not in page


def test_support_sees_plan_limits_usage_and_filters_by_overage(world, support):
    Company.objects.filter(pk=world["b"].pk).update(events_per_month_override=1_000)
    UsageFactory(company=world["b"], month=month_start(), event_count=1_500, overage_at=timezone.now())
    UsageFactory(company=world["a"], month=month_start(), event_count=10)

    page = text(support.get(url("company_changelist")))
    assert "1,500" in page
    assert "Starter" in page

    over = text(support.get(url("company_changelist"), {"overage": "yes"}))
    assert "Beta Widgets" in over
    assert "Acme Analytics" not in over
    detail = text(support.get(url("company_change", world["b"].pk)))
    assert "1,500 of 1,000 events (over the limit since" in detail


def test_nobody_sees_a_secret_or_key_in_full(world, support, superuser):
    for client in (support, superuser):
        pages = "".join(
            text(client.get(target))
            for target in (
                url("apisecret_changelist"),
                url("sdkkey_changelist"),
                url("application_change", world["app_b"].pk),
                url("apisecret_change", ApiSecret.objects.get(application=world["app_b"]).pk),
            )
        )
        for raw in (world["secret_a"], world["secret_b"], world["key_a"], world["key_b"]):
            assert raw not in pages
        assert prefix(world["key_b"]) in pages


# --- Superusers ------------------------------------------------------------------------------


def test_superuser_sees_and_changes_everything(world, superuser):
    page = text(superuser.get(url("application_changelist")))
    assert "Acme Web" in page
    assert "Beta Mobile" in page
    assert superuser.get(url("plan_changelist")).status_code == 200
    enterprise = Plan.objects.get(tier=Plan.Tier.ENTERPRISE)

    superuser.post(
        url("company_change", world["b"].pk),
        {
            "name": "Beta Widgets",
            "plan": enterprise.pk,
            "is_active": "on",
            "created_at_0": "2025-01-01",
            "created_at_1": "00:00:00",
            "applications-TOTAL_FORMS": 0,
            "applications-INITIAL_FORMS": 0,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )

    assert Company.objects.get(pk=world["b"].pk).plan == enterprise


def test_default_plans_and_support_group_are_seeded(db):
    assert set(Plan.objects.values_list("tier", flat=True)) >= set(Plan.Tier.values)
    assert Group.objects.filter(name=SUPPORT_GROUP).exists()


# --- Mixed roles and foreign filter values (issue 9) -------------------------------------------


@pytest.fixture
def support_and_owner(world, client):
    """A support user who is also the owner of Acme: reads every company, writes only Acme."""
    user = MembershipFactory(company=world["a"], role="owner").user
    user.groups.add(Group.objects.get_or_create(name=SUPPORT_GROUP)[0])
    return _client(client, user)


def _app_form(name: str) -> dict:
    return {
        "name": name,
        "environments": "",
        "is_active": "on",
        **{f"{inline}-{count}": 0 for inline in ("secrets", "sdk_keys") for count in ("TOTAL_FORMS", "INITIAL_FORMS")},
    }


def test_support_who_owns_a_company_cannot_change_another(world, support_and_owner):
    app_a, app_b = world["app_a"], world["app_b"]
    endpoint_b = WebhookEndpointFactory(company=world["b"], application=app_b)
    secret_b = ApiSecret.objects.get(application=app_b)
    key_b = SdkKey.objects.get(application=app_b)

    # Another company: readable, but every write is refused
    assert "Beta Mobile" in text(support_and_owner.get(url("application_change", app_b.pk)))
    assert support_and_owner.post(url("application_change", app_b.pk), _app_form("Hacked")).status_code == 403
    for target in (
        url("application_rotate_secret", app_b.pk),
        url("application_new_sdk_key", app_b.pk),
        url("application_revoke_secret", app_b.pk, secret_b.pk),
        url("application_revoke_sdk_key", app_b.pk, key_b.pk),
        reverse("admin:webhooks_webhookendpoint_rotate_secret", args=[endpoint_b.pk]),
    ):
        assert support_and_owner.post(target, {"expire_old_in_hours": 0}).status_code == 403, target
    support_and_owner.post(
        url("sdkkey_changelist"), {"action": "revoke_selected", "_selected_action": [key_b.pk], "index": 0}
    )
    app_b.refresh_from_db()
    assert app_b.name == "Beta Mobile"
    assert ApiSecret.objects.filter(application=app_b, revoked_at__isnull=True, expires_at__isnull=True).count() == 1
    assert list(SdkKey.objects.filter(application=app_b).values_list("revoked_at", flat=True)) == [None]
    assert WebhookEndpoint.objects.get(pk=endpoint_b.pk).secret == endpoint_b.secret

    # Their own company: writable as before
    assert support_and_owner.post(url("application_change", app_a.pk), _app_form("Acme Renamed")).status_code == 302
    rotated = support_and_owner.post(url("application_rotate_secret", app_a.pk), {"expire_old_in_hours": 0})
    assert rotated.status_code == 200
    app_a.refresh_from_db()
    assert app_a.name == "Acme Renamed"
    assert ApiSecret.objects.filter(application=app_a).count() == 2


def test_a_filter_on_another_companys_app_lists_nothing_and_select_all_acts_on_nothing(world, account_admin):
    foreign = {"application__id__exact": world["app_b"].pk}

    page = text(account_admin.get(url("apisecret_changelist"), foreign))
    assert "sts_…" + world["secret_a"][-4:] not in page
    assert "0 API secrets" in page

    account_admin.post(
        url("apisecret_changelist") + f"?application__id__exact={world['app_b'].pk}",
        {"action": "revoke_selected", "select_across": "1", "index": 0, "_selected_action": ["0"]},
    )
    live = app_credentials_get(app_uuid=world["app_a"].uuid).live_secrets(timezone.now().timestamp())
    assert live == [world["secret_a"].encode()]
