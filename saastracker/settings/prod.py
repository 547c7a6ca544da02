"""Production: refuses to start without its secrets; security knobs from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

from saastracker.logs import logging_config

from .base import *  # noqa: F403
from .base import LOG_LEVEL, METRICS_TOKEN, TRUSTED_PROXY_COUNT, env, env_bool, env_int


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production")
    return value


DEBUG = False
SECRET_KEY = _required("SECRET_KEY")
FIELD_ENCRYPTION_KEY = _required("FIELD_ENCRYPTION_KEY")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# X-Forwarded-Proto (and X-Forwarded-For, for the login throttle) are believed only when a proxy is
# configured in front (TRUSTED_PROXY_COUNT > 0): without one, any client could claim https.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT > 0 else None
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
# HSTS on by default (one year); SECURE_HSTS_SECONDS=0 turns it off (a site still reached over http).
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The health, probe and metrics endpoints are probed and scraped over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/ingest/health$", r"^livez$", r"^readyz$", r"^metrics$"]

# /metrics: a bearer token, or (only when explicitly allowed) loopback clients. A same-host proxy that
# forwards outside clients with only X-Real-IP makes them look like loopback, so that is opt-in.
METRICS_LOOPBACK_ALLOWED = env_bool("METRICS_LOOPBACK_ALLOWED", False)
if not METRICS_TOKEN and not METRICS_LOOPBACK_ALLOWED:
    raise ImproperlyConfigured(
        "METRICS_TOKEN must be set in production (or METRICS_LOOPBACK_ALLOWED=1 to serve /metrics to loopback "
        "clients without a token, only where no proxy on this host forwards outside clients)"
    )

# JSON lines for log collectors; LOG_FORMAT=text for people reading a terminal.
LOG_FORMAT = env("LOG_FORMAT", "json") or "json"
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
