"""Who may read analytics: a logged-in user (session) or a program with a personal API key.

`Authorization: Bearer stp_...` acts as the key's user. The key is looked up by its SHA-256 hash
(a unique index), so no raw key is stored or compared character by character.
"""

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request

from apps_registry.crypto import hash_key

from .models import PersonalApiKey
from .services import PERSONAL_KEY_PREFIX

_TOUCH_EVERY = timedelta(minutes=5)


class PersonalKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, PersonalApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        if scheme != self.keyword or not raw.startswith(PERSONAL_KEY_PREFIX):
            return None  # not ours: let session authentication (or nothing) decide
        key = (
            PersonalApiKey.objects.select_related("user")
            .filter(key_hash=hash_key(raw.strip()), revoked_at__isnull=True)
            .first()
        )
        if key is None or not key.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked personal API key.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
            PersonalApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword  # makes DRF answer 401 (with WWW-Authenticate), not 403


READ_AUTHENTICATION = [SessionAuthentication, PersonalKeyAuthentication]
