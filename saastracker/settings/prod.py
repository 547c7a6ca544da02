"""Production: refuses to start without its secrets; security knobs from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

from saastracker.logs import logging_config

from .base import *  # noqa: F403
from .base import LOG_LEVEL, env, env_bool, env_int


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production")
    return value


DEBUG = False
SECRET_KEY = _required("SECRET_KEY")
FIELD_ENCRYPTION_KEY = _required("FIELD_ENCRYPTION_KEY")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The health, probe and metrics endpoints are probed and scraped over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/ingest/health$", r"^livez$", r"^readyz$", r"^metrics$"]

# JSON lines for log collectors; LOG_FORMAT=text for people reading a terminal.
LOG_FORMAT = env("LOG_FORMAT", "json") or "json"
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
