"""Tests: real PostgreSQL and Redis; a database of the suite's own."""

from .base import *  # noqa: F403
from .base import DATABASES, env, env_bool

DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["OPTIONS"].pop("pool", None)  # the suite's own connections; scripts/serve's servers pool
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", "test_saastracker")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Redis database 15 belongs to the suite; it is flushed between tests.
REDIS_URL = env("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
CELERY_BROKER_URL = env("TEST_CELERY_BROKER_URL", REDIS_URL)

# Static files are not collected for tests: WhiteNoise serves them from the apps' static folders
# (the browser tests run the real server, which has no other way to serve Chart.js and htmx).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
