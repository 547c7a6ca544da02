"""Reads about tenants. The credential lookups are on the ingest hot path, so they are cached.

Each web process keeps credentials for CREDENTIALS_CACHE_TTL seconds. A change saved in this
process (rotation, revocation, deactivation) clears the cache at once (see `signals.py`);
other processes see it within the TTL.
"""

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import FilteredRelation, Q
from django.utils import timezone

from .crypto import hash_key
from .models import Application, SdkKey

_MAX_ENTRIES = 10_000  # bounds memory when clients send random uuids or keys


@dataclass(frozen=True, slots=True)
class AppCredentials:
    app_id: int
    app_uuid: uuid.UUID
    company_id: int
    is_active: bool
    secrets: tuple[tuple[bytes, float | None], ...]  # (secret, expires_at as epoch seconds or None)

    def live_secrets(self, now: float) -> list[bytes]:
        return [secret for secret, expires in self.secrets if expires is None or expires > now]


@dataclass(frozen=True, slots=True)
class SdkKeyCredentials:
    key_id: int
    app_id: int
    app_uuid: uuid.UUID
    company_id: int
    is_active: bool  # key not revoked, app and company active


class _TTLCache:
    def __init__(self) -> None:
        self._data: dict = {}
        self._lock = threading.Lock()

    def get(self, key, loader):
        hit = self._data.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < settings.CREDENTIALS_CACHE_TTL:
            return hit[1]
        value = loader(key)
        with self._lock:
            if len(self._data) >= _MAX_ENTRIES:
                self._data.clear()
            self._data[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_apps = _TTLCache()
_sdk_keys = _TTLCache()


def credentials_cache_clear() -> None:
    _apps.clear()
    _sdk_keys.clear()


def _load_app(app_uuid: uuid.UUID) -> AppCredentials | None:
    rows = list(
        Application.objects.annotate(live=FilteredRelation("secrets", condition=Q(secrets__revoked_at__isnull=True)))
        .filter(uuid=app_uuid)
        .values_list("id", "is_active", "company_id", "company__is_active", "live__secret", "live__expires_at")
    )
    if not rows:
        return None
    app_id, app_active, company_id, company_active = rows[0][:4]
    secrets = tuple(
        (secret.encode(), expires.timestamp() if expires else None) for *_, secret, expires in rows if secret
    )
    return AppCredentials(app_id, app_uuid, company_id, app_active and company_active, secrets)


def app_credentials_get(*, app_uuid: uuid.UUID) -> AppCredentials | None:
    """The app and its live API secrets, or None when the uuid is unknown."""
    return _apps.get(app_uuid, _load_app)


def _load_sdk_key(key_hash: str) -> SdkKeyCredentials | None:
    row = (
        SdkKey.objects.filter(key_hash=key_hash)
        .values_list(
            "id",
            "application_id",
            "application__uuid",
            "application__company_id",
            "revoked_at",
            "application__is_active",
            "application__company__is_active",
        )
        .first()
    )
    if row is None:
        return None
    key_id, app_id, app_uuid, company_id, revoked_at, app_active, company_active = row
    return SdkKeyCredentials(key_id, app_id, app_uuid, company_id, revoked_at is None and app_active and company_active)


def sdk_key_credentials_get(*, key: str) -> SdkKeyCredentials | None:
    """Look a key up by its hash; None when no such key was ever issued."""
    return _sdk_keys.get(hash_key(key), _load_sdk_key)


def month_start(moment: datetime | None = None):
    moment = moment or timezone.now()
    return moment.astimezone(UTC).date().replace(day=1)
