"""Writes of the analytics app."""

import secrets

from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.exceptions import NotFound

from apps_registry.crypto import hash_key
from apps_registry.models import Application

from .models import Feature, OrgSignal, PersonalApiKey
from .selectors import application_active_check

PERSONAL_KEY_PREFIX = "stp_"


def new_personal_key() -> tuple[str, str]:
    """Return (full key, readable prefix); the prefix tells keys apart in the admin."""
    prefix = PERSONAL_KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def personal_key_create(*, user: User, name: str = "") -> tuple[PersonalApiKey, str]:
    """Return the stored key and the raw key, which is shown once and never again."""
    raw, prefix = new_personal_key()
    key = PersonalApiKey.objects.create(user=user, name=name, prefix=prefix, key_hash=hash_key(raw))
    return key, raw


def personal_key_revoke(*, key: PersonalApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def feature_create(*, app: Application, name: str, events: list[str], path_prefixes: list[str]) -> Feature:
    """Define a feature; it applies to every day the rollups hold, not only from now on.

    Call inside a transaction: the application row is locked so that concurrent definitions cannot
    pass FEATURES_PER_APP_MAX together.
    """
    Application.objects.select_for_update().filter(pk=app.pk).values_list("pk", flat=True).first()
    feature = Feature(application=app, name=name, events=events, path_prefixes=path_prefixes)
    feature.full_clean()
    feature.save()
    return feature


def feature_delete(*, app: Application, name: str) -> bool:
    """Remove a feature by name; False if it did not exist (so programs can delete idempotently)."""
    if "\x00" in name:  # PostgreSQL holds no NUL: no feature has such a name
        return False
    deleted, _ = Feature.objects.filter(application=app, name=name).delete()
    return bool(deleted)


def signal_dismiss(*, app: Application, customer_org_id: str, signal: str) -> OrgSignal:
    """Dismiss an active signal: it stays dismissed until a scan raises it afresh after it had cleared."""
    application_active_check(app=app)
    if "\x00" in customer_org_id or "\x00" in signal:  # PostgreSQL holds no NUL: no such signal
        raise NotFound("No such active signal.")
    active = OrgSignal.objects.filter(
        application=app, customer_org_id=customer_org_id, kind=signal, cleared_at__isnull=True
    ).first()
    if active is None:
        raise NotFound("No such active signal.")
    if active.dismissed_at is None:
        active.dismissed_at = timezone.now()
        active.save(update_fields=["dismissed_at"])
    return active
