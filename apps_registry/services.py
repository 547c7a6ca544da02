"""Writes about tenants: applications, secrets, keys, usage. Raw secrets are returned once, never stored."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .crypto import hash_key, new_api_secret, new_sdk_key
from .models import ApiSecret, Application, Company, Plan, SdkKey, Usage
from .selectors import month_start

DEFAULT_PLANS = {
    Plan.Tier.TRIAL: {"events_per_month": 100_000, "apps_max": 1, "retention_days": 30, "orgs_max": 10},
    Plan.Tier.STARTER: {"events_per_month": 1_000_000, "apps_max": 3, "retention_days": 90, "orgs_max": 100},
    Plan.Tier.GROWTH: {"events_per_month": 10_000_000, "apps_max": 10, "retention_days": 365, "orgs_max": 1_000},
    Plan.Tier.ENTERPRISE: {
        "events_per_month": 1_000_000_000,
        "apps_max": 100,
        "retention_days": 730,
        "orgs_max": 100_000,
    },
}


def plan_get_or_create(*, tier: str) -> Plan:
    plan, _ = Plan.objects.get_or_create(tier=tier, defaults=DEFAULT_PLANS[Plan.Tier(tier)])
    return plan


def company_get_or_create(*, name: str, tier: str = Plan.Tier.TRIAL, events_per_month: int | None = None) -> Company:
    company, _ = Company.objects.get_or_create(name=name, defaults={"plan": plan_get_or_create(tier=tier)})
    if events_per_month is not None and company.events_per_month_override != events_per_month:
        company.events_per_month_override = events_per_month
        company.save(update_fields=["events_per_month_override"])
    return company


@dataclass(frozen=True)
class NewApplication:
    application: Application
    api_secret: str
    sdk_key: str


def application_create(*, company: Company, name: str, environments: list[str] | None = None) -> NewApplication:
    """Create an app with one API secret and one SDK key; refuse past the plan's apps_max."""
    with transaction.atomic():
        company = Company.objects.select_for_update().select_related("plan").get(pk=company.pk)
        if company.applications.count() >= company.apps_max:
            raise ValidationError(
                f"{company.name} already has {company.apps_max} application(s), the most its plan allows."
            )
        app = Application.objects.create(company=company, name=name, environments=environments or [])
        secret = api_secret_create(application=app)
        key = sdk_key_create(application=app)
    return NewApplication(app, secret, key)


def api_secret_create(*, application: Application) -> str:
    secret = new_api_secret()
    ApiSecret.objects.create(application=application, secret=secret, hint=secret[-4:])
    return secret


def api_secret_rotate(*, application: Application, expire_old_in: timedelta = timedelta(hours=24)) -> str:
    """A new secret now; live old ones keep working until `expire_old_in` from now (or revocation)."""
    now = timezone.now()
    with transaction.atomic():
        for old in application.secrets.select_for_update().filter(revoked_at__isnull=True):
            if old.expires_at is None or old.expires_at > now + expire_old_in:
                old.expires_at = now + expire_old_in
                old.save(update_fields=["expires_at"])
        return api_secret_create(application=application)


def api_secret_revoke(*, secret: ApiSecret) -> None:
    if secret.revoked_at is None:
        secret.revoked_at = timezone.now()
        secret.save(update_fields=["revoked_at"])


def sdk_key_create(*, application: Application) -> str:
    key, prefix = new_sdk_key()
    SdkKey.objects.create(application=application, prefix=prefix, key_hash=hash_key(key))
    return key


def sdk_key_revoke(*, key: SdkKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def sdk_key_touch(*, key_id: int, at: datetime) -> None:
    """Record use; callers throttle this so it is not a write per request."""
    SdkKey.objects.filter(pk=key_id).update(last_used_at=at)


def usage_refresh(*, now: datetime | None = None) -> dict[int, int]:
    """Flag overage on this month's usage rows the first time the limit is passed; return the counts.

    The counts themselves are kept by the analytics fold, exactly once and incrementally as events
    are folded (never a scan of the stored events, and never lowered when retention deletes rows).
    The fold flags overage as it counts; this periodic re-check catches limits lowered since.
    """
    now = now or timezone.now()
    month = month_start(now)
    usages = list(Usage.objects.filter(month=month).select_related("company__plan"))
    for usage in usages:
        if usage.overage_at is None and usage.event_count > usage.company.events_per_month:
            Usage.objects.filter(pk=usage.pk, overage_at__isnull=True).update(overage_at=now)
    return {usage.company_id: usage.event_count for usage in usages}
