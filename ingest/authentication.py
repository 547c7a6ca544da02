"""DRF authentication for both ingest protocols.

`HmacSignatureAuthentication` (/v1/events): `x-app-uuid` names the app, `x-signature` is the
lowercase hex HMAC-SHA256 of the raw body under any live API secret of that app. The body is
not parsed before the signature matches.

`SdkKeyAuthentication` (/api/v1/ingest/*): `x-api-key` is looked up by its SHA-256 hash.

Both return `(None, credentials)`, so views read `request.auth`. Neither logs a secret, a key
or a full signature.
"""

import hmac
import logging
import time
import uuid

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps_registry.selectors import (
    AppCredentials,
    SdkKeyCredentials,
    app_credentials_get,
    sdk_key_credentials_get,
)
from apps_registry.services import sdk_key_touch
from saastracker.logs import context_bind

from .errors import ApiError

logger = logging.getLogger(__name__)

UNKNOWN_APP = "Unknown app_uuid"
INVALID_SIGNATURE = "Invalid signature"


def unknown_app() -> ApiError:
    return ApiError(status_code=404, code=UNKNOWN_APP, message=UNKNOWN_APP)


def invalid_signature() -> ApiError:
    return ApiError(
        status_code=401,
        code=INVALID_SIGNATURE,
        message="Invalid signature: x-signature must be the lowercase hex HMAC-SHA256 of the raw body.",
    )


def signature_matches(secrets: list[bytes], body: bytes, signature: str) -> bool:
    """Compare against every live secret in constant time (rotation keeps two live)."""
    if len(signature) != 64:
        return False
    given = signature.encode("ascii", "replace")
    matched = False
    for secret in secrets:
        expected = hmac.digest(secret, body, "sha256").hex().encode()  # one-shot C path: half of hmac.new's cost
        matched |= hmac.compare_digest(expected, given)
    return matched


class HmacSignatureAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, AppCredentials]:
        raw_uuid = request.META.get("HTTP_X_APP_UUID", "")
        try:
            app_uuid = uuid.UUID(raw_uuid.strip())
        except (ValueError, AttributeError):
            raise unknown_app() from None
        creds = app_credentials_get(app_uuid=app_uuid)
        if creds is None or not creds.is_active:
            raise unknown_app()
        signature = request.META.get("HTTP_X_SIGNATURE", "")
        if not signature_matches(creds.live_secrets(time.time()), request._request.body, signature):
            logger.info("invalid signature for app %s", app_uuid)
            raise invalid_signature()
        context_bind(app_uuid=str(app_uuid))
        return None, creds

    def authenticate_header(self, request: Request) -> str:
        return "HMAC-SHA256"


_TOUCH_EVERY_SECONDS = 300
_last_touch: dict[int, float] = {}


class SdkKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, SdkKeyCredentials]:
        key = request.META.get("HTTP_X_API_KEY", "")
        creds = sdk_key_credentials_get(key=key) if key else None
        if creds is None or not creds.is_active:
            raise ApiError(status_code=401, code="unauthorized", message="Missing, unknown or revoked x-api-key.")
        context_bind(app_uuid=str(creds.app_uuid))
        # last_used_at is written at most every five minutes per key and process.
        now = time.monotonic()
        if now - _last_touch.get(creds.key_id, -_TOUCH_EVERY_SECONDS) >= _TOUCH_EVERY_SECONDS:
            _last_touch[creds.key_id] = now
            sdk_key_touch(key_id=creds.key_id, at=timezone.now())
        return None, creds

    def authenticate_header(self, request: Request) -> str:
        return "x-api-key"
