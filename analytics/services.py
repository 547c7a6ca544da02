"""Writes of the analytics app."""

import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from apps_registry.crypto import hash_key

from .models import PersonalApiKey

PERSONAL_KEY_PREFIX = "stp_"


def new_personal_key() -> tuple[str, str]:
    """Return (full key, readable prefix); the prefix tells keys apart in the admin."""
    prefix = PERSONAL_KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def personal_key_create(*, user: AbstractBaseUser, name: str = "") -> tuple[PersonalApiKey, str]:
    """Return the stored key and the raw key, which is shown once and never again."""
    raw, prefix = new_personal_key()
    key = PersonalApiKey.objects.create(user=user, name=name, prefix=prefix, key_hash=hash_key(raw))
    return key, raw


def personal_key_revoke(*, key: PersonalApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
