"""Settings shared by every environment; every knob comes from the environment.

Each variable read here is documented in `.env.example`.
"""

import os
from pathlib import Path
from typing import overload

import dj_database_url

from saastracker.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent


@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: None = None) -> str | None: ...
def env(name: str, default: str | None = None) -> str | None:
    """A variable with a default is never None, so the type checker need not be told so at every use."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (os.environ.get(name) or default).split(",") if item.strip()]


SECRET_KEY = env("SECRET_KEY", "dev-insecure-secret-key-change-me")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# How many reverse proxies stand in front of the web server and append to X-Forwarded-For. 0 (the
# default): none, so X-Forwarded-Proto and X-Forwarded-For are client input and never believed.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by WhiteNoise like ours
    "apps_registry",
    "ingest",
    "webhooks",
    "revenue",
    "analytics",
]

MIDDLEWARE = [
    "saastracker.middleware.RequestContextMiddleware",  # outermost: request id, request log line, metrics
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "analytics.pages.middleware.content_security_policy",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: answers the lockout page
]
# The ingest APIs (/v1/, /api/v1/ingest/) are served with this shorter stack (see saastracker/wsgi.py):
# they use no session, cookie, CSRF token, message or frame, and every middleware costs at ingest rates.
INGEST_MIDDLEWARE = ["saastracker.middleware.RequestContextMiddleware", "django.middleware.security.SecurityMiddleware"]

ROOT_URLCONF = "saastracker.urls"
WSGI_APPLICATION = "saastracker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL is the one database the code is written for (ON CONFLICT, SKIP LOCKED, arrays).
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/saastracker"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 600),
        conn_health_checks=False,  # a health check is an extra round trip on the hot path
    )
}
# A database host that drops packets must not hang a request (or the health check) for the
# operating system's TCP timeout: fail fast, answer 503, let the client retry.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5)
# Connections a process may hold, whatever its thread churn: a psycopg pool of at most
# DB_POOL_MAX_SIZE connections per process (scripts/serve sets it to WEB_THREADS + 3 probe threads,
# so no thread ever waits for one). A thread takes a connection for one request and gives it back, so a
# thread that granian retires leaves nothing open. 0 (the default outside scripts/serve): persistent
# connections, one per thread (Celery's children run one task at a time). Sizing, in the README:
# WEB_CONCURRENCY x DB_POOL_MAX_SIZE + worker processes + reserve <= max_connections.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 0)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django refuses both at once
    DATABASES["default"]["OPTIONS"]["pool"] = {
        # A fixed size by default: every connection is opened at start, so a burst never waits for
        # new ones, and a request waits for one only when PostgreSQL cannot be reached.
        "min_size": min(env_int("DB_POOL_MIN_SIZE", DB_POOL_MAX_SIZE), DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        # Seconds a request waits for a connection (none free: PostgreSQL unreachable, since the pool
        # has one per thread): then 503, as fast as a refused connection was before the pool.
        "timeout": float(env("DB_POOL_TIMEOUT", "1") or 1),
        "name": "saastracker-web",
    }
    # Django's backend, with a pool that checks a connection idle for 1 s before lending it (one round
    # trip, only then): after a PostgreSQL restart no request gets a dead connection (saastracker/pgpool/).
    DATABASES["default"]["ENGINE"] = "saastracker.pgpool"
# A pooler in transaction mode (PgBouncer 1.18, Debian's) hands each transaction to any server
# connection, so nothing may outlive a transaction on one: named prepared statements (the ingest hot
# path prepares its few statements, see ingest.db.prepared_cursor) and named server-side cursors
# (QuerySet.iterator() declares one) are turned off. Everything else already is transaction-scoped:
# advisory locks are `_xact_`, SET is `SET LOCAL` / `set_config(..., true)`, the fold's temp table is
# created in the transaction that uses it and emptied at commit, and nothing LISTENs.
DATABASE_POOLER = env("DATABASE_POOLER", "").strip().lower()
if DATABASE_POOLER not in ("", "pgbouncer"):
    raise ValueError(f"DATABASE_POOLER={DATABASE_POOLER!r}: only 'pgbouncer' (or empty: no pooler) is known")
if DATABASE_POOLER:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None  # psycopg never prepares (Django's default)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

# Login throttling (django-axes, see saastracker/logins.py): its backend first, to refuse a locked-out
# username or address before any password is hashed.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 5)
AXES_ENABLED = env_bool("LOGIN_THROTTLE_ENABLED", True)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own, not the pair
AXES_COOLOFF_TIME = "saastracker.logins.cool_off"
AXES_CLIENT_IP_CALLABLE = "saastracker.logins.client_ip"
AXES_LOCKOUT_CALLABLE = "saastracker.logins.locked_out"
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken", "password"]
AXES_ENABLE_ACCESS_FAILURE_LOG = False  # AccessAttempt keeps the counts; no row per failure
AXES_DISABLE_ACCESS_LOG = True  # no AccessLog row per successful login either

# PBKDF2 as Django's default, computed on one low-priority thread per process (saastracker/logins.py).
PASSWORD_HASHERS = [
    "saastracker.logins.BackgroundPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT: Path | None = BASE_DIR / "staticfiles"  # None in tests (see test.py)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Analytics pages (/app/) ---------------------------------------------------------------
# The product's login page; the admin keeps its own. Logout and password change live beside it.
LOGIN_URL = "pages:login"
LOGIN_REDIRECT_URL = "pages:home"
LOGOUT_REDIRECT_URL = "pages:login"
# How often the event stream page asks for new events (milliseconds); new events show within 5 s.
PAGES_STREAM_POLL_MS = env_int("PAGES_STREAM_POLL_MS", 2000)

# --- Secrets at rest -------------------------------------------------------------------------
# Fernet key(s), comma-separated: the first encrypts, all decrypt (key rotation).
FIELD_ENCRYPTION_KEY = env("FIELD_ENCRYPTION_KEY", "2W5mE6bY1pQh0oBvV2c8i2nJcQ1w3m9y3r0uGZQpX1k=")

# --- Public URLs -----------------------------------------------------------------------------
PUBLIC_INGEST_BASE_URL = env("PUBLIC_INGEST_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Request threads -------------------------------------------------------------------------
# WEB_THREADS is granian's blocking threads per process (scripts/serve). Of them, this many are kept
# for ingest: other requests (reads, logins, admin) past the rest are answered 503 at once (wsgi.py).
WEB_THREADS = env_int("WEB_THREADS", 16)
WEB_INGEST_RESERVED_THREADS = env_int("WEB_INGEST_RESERVED_THREADS", max(2, WEB_THREADS // 4))

# --- Ingest ----------------------------------------------------------------------------------
INGEST_V1_MAX_BODY_BYTES = env_int("INGEST_V1_MAX_BODY_BYTES", 64 * 1024)
INGEST_SDK_MAX_BODY_BYTES = env_int("INGEST_SDK_MAX_BODY_BYTES", 1024 * 1024)
INGEST_SDK_MAX_EVENTS = env_int("INGEST_SDK_MAX_EVENTS", 500)
# Raw bodies may exceed Django's in-memory default; each endpoint enforces its own limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(INGEST_SDK_MAX_BODY_BYTES, 2_621_440)
CREDENTIALS_CACHE_TTL = env_int("CREDENTIALS_CACHE_TTL", 5)
# Token bucket per application: sustained requests per second and burst size.
RATE_LIMIT_PER_SECOND = env_int("RATE_LIMIT_PER_SECOND", 2000)
RATE_LIMIT_BURST = env_int("RATE_LIMIT_BURST", 4000)
IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600)
# How long an SDK event id is remembered (a retry stores nothing): this many days at least, and as
# long as the company keeps its events plus a week (ingest/services/retention.py). Never under 30.
SDK_DEDUP_DAYS = max(30, env_int("SDK_DEDUP_DAYS", 35))
# After a connection error during an INSERT, seconds a request may spend reconnecting to learn whether
# its commit landed (202 if so, 503 if not). PostgreSQL's crash recovery must fit in it.
DB_IN_DOUBT_SECONDS = float(env("DB_IN_DOUBT_SECONDS", "5") or 5)
# Health and readiness verdicts are computed at most once per this many seconds per process (they write).
HEALTH_CACHE_SECONDS = float(env("HEALTH_CACHE_SECONDS", "2") or 2)
# A probe answers within this many seconds whatever the database does: past it, the check counts as
# failing and its computation carries on in the background (a frozen server holds no request).
HEALTH_PROBE_TIMEOUT_SECONDS = float(env("HEALTH_PROBE_TIMEOUT_SECONDS", "0.8") or 0.8)

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish must never hang a request when the broker is down: the sweepers recover the work.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_PUBLISH_RETRY = False
# Workers log through LOGGING below (JSON lines in production, with task id and name), not Celery's format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict = {}  # filled in by each app's tasks (see saastracker/celery.py)

# --- BigQuery --------------------------------------------------------------------------------
BIGQUERY_PROJECT = env("BIGQUERY_PROJECT", "")
BIGQUERY_DATASET = env("BIGQUERY_DATASET", "saastracker")
BIGQUERY_API_ENDPOINT = env("BIGQUERY_API_ENDPOINT", "")
BIGQUERY_LOCATION = env("BIGQUERY_LOCATION", "US")
# Per-call timeout for BigQuery requests (the client's default retries would take 10 minutes).
BIGQUERY_TIMEOUT_SECONDS = float(env("BIGQUERY_TIMEOUT_SECONDS", "10"))
# Rows per insertAll call (at most 500) and how many export tasks drain a backlog side by side.
EXPORT_BATCH_SIZE = min(env_int("EXPORT_BATCH_SIZE", 500), 500)
EXPORT_FANOUT = env_int("EXPORT_FANOUT", 2)

# --- Webhooks --------------------------------------------------------------------------------
WEBHOOK_TIMEOUT_SECONDS = float(env("WEBHOOK_TIMEOUT_SECONDS", "15"))
WEBHOOK_RETRY_SCHEDULE = [int(s) for s in env_list("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000")]
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
WEBHOOK_DISABLE_AFTER_SECONDS = env_int("WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 24 * 3600)

# Analytics (analytics/): the fold, the organizations scan and the health model (documented in the
# API docs of the organizations endpoints). Weights are relative; a component that cannot be computed
# (breadth when the app defines no feature) is left out and the others are rescaled.
ANALYTICS_FOLD_CHUNK_SIZE = env_int("ANALYTICS_FOLD_CHUNK_SIZE", 100000)
# Retention keeps raw rows these callables (model -> filter kwargs) select: rows the fold has not counted.
RETENTION_KEEP_FILTERS = ["analytics.fold.retention_unfolded_filter"]
# The admin's rollup lag: receive time of the oldest row of a queryset not yet folded in.
ROLLUP_OLDEST_UNFOLDED = "analytics.fold.oldest_unfolded_received"
ANALYTICS_SCAN_DEBOUNCE_SECONDS = env_int("ANALYTICS_SCAN_DEBOUNCE_SECONDS", 30)
ANALYTICS_HEALTH_WEIGHTS = {
    "recency": float(env("ANALYTICS_HEALTH_WEIGHT_RECENCY", "0.3")),
    "trend": float(env("ANALYTICS_HEALTH_WEIGHT_TREND", "0.3")),
    "breadth": float(env("ANALYTICS_HEALTH_WEIGHT_BREADTH", "0.2")),
    "depth": float(env("ANALYTICS_HEALTH_WEIGHT_DEPTH", "0.2")),
}
ANALYTICS_HEALTH_HEALTHY_MIN = env_int("ANALYTICS_HEALTH_HEALTHY_MIN", 70)
ANALYTICS_HEALTH_WATCH_MIN = env_int("ANALYTICS_HEALTH_WATCH_MIN", 40)
ANALYTICS_HEALTH_RECENCY_DAYS = env_int("ANALYTICS_HEALTH_RECENCY_DAYS", 30)
ANALYTICS_HEALTH_DEPTH_USERS = env_int("ANALYTICS_HEALTH_DEPTH_USERS", 5)
ANALYTICS_HEALTH_DEPTH_SESSIONS_PER_USER = env_int("ANALYTICS_HEALTH_DEPTH_SESSIONS_PER_USER", 4)
# Caps (issue 19): usage down by these percents (last 30 days vs the 30 before) caps the bucket at
# watch / at_risk; silence of SILENCE_DAYS after regular use (active on REGULAR_DAYS days of 60) is
# at_risk; no event for INACTIVE_DAYS is inactive. New orgs (first seen < NEW_DAYS ago, unless active
# on NEW_EXIT_ACTIVE_DAYS days already) are `new`, without a verdict. Each app can tune these.
ANALYTICS_HEALTH_DROP_WATCH_PCT = env_int("ANALYTICS_HEALTH_DROP_WATCH_PCT", 50)
ANALYTICS_HEALTH_DROP_AT_RISK_PCT = env_int("ANALYTICS_HEALTH_DROP_AT_RISK_PCT", 70)
ANALYTICS_HEALTH_SILENCE_DAYS = env_int("ANALYTICS_HEALTH_SILENCE_DAYS", 14)
ANALYTICS_HEALTH_INACTIVE_DAYS = env_int("ANALYTICS_HEALTH_INACTIVE_DAYS", 30)
ANALYTICS_HEALTH_REGULAR_DAYS = env_int("ANALYTICS_HEALTH_REGULAR_DAYS", 3)
ANALYTICS_HEALTH_NEW_DAYS = env_int("ANALYTICS_HEALTH_NEW_DAYS", 14)
ANALYTICS_HEALTH_NEW_EXIT_ACTIVE_DAYS = env_int("ANALYTICS_HEALTH_NEW_EXIT_ACTIVE_DAYS", 10)
ANALYTICS_HEALTH_HISTORY_DAYS = env_int("ANALYTICS_HEALTH_HISTORY_DAYS", 400)
# A scan task handles this many orgs, then queues the next chunk behind other work (issue 18 item 4).
ANALYTICS_SCAN_CHUNK_ORGS = env_int("ANALYTICS_SCAN_CHUNK_ORGS", 2000)
# --- Analytics: Event explorer (issue 11) -----------------------------------------------------
# Where `POST /api/v1/analytics/apps/<uuid>/query` runs: postgres (raw rows within retention) or
# bigquery (the exported tables, full history; needs the BigQuery settings above).
ANALYTICS_QUERY_ENGINE = env("ANALYTICS_QUERY_ENGINE", "postgres")
# Seconds a query may run before the engine cancels it (answered 504).
ANALYTICS_QUERY_TIMEOUT = float(env("ANALYTICS_QUERY_TIMEOUT", "10"))
# Funnels read the fold's narrow copy of events when it answers exactly (analytics/query/funnel_fast.py);
# 0 sends every funnel to the raw statement (a switch for the bench's "before", or if it misbehaves).
ANALYTICS_FUNNEL_FAST_PATH = env_bool("ANALYTICS_FUNNEL_FAST_PATH", True)
# Analytics API reads one company may have running at once, over all web processes (Redis); past it,
# 429 with Retry-After (seconds). Keeps one tenant's heavy reads from taking everyone's CPU (issue 18).
ANALYTICS_READS_PER_TENANT = env_int("ANALYTICS_READS_PER_TENANT", 2)
ANALYTICS_READS_RETRY_AFTER = env_int("ANALYTICS_READS_RETRY_AFTER", 2)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [],
    "EXCEPTION_HANDLER": "ingest.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SaaSTracker Ingest API",
    "DESCRIPTION": "Signed single events (`/v1/events`) and batched SDK events (`/api/v1/ingest/*`).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ loads Swagger UI from this project's static files (the pinned drf-spectacular-sidecar),
    # never from a CDN: it works without internet, and no third party serves code to our origin.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The default enum hook, then the recursive `PropertyValue` component that `properties` refers to,
    # then the error answers every analytics operation shares, in the one error shape.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ingest.api.sdk_openapi.property_value_hook",
        "analytics.api.openapi.analytics_errors_hook",
        "analytics.api.funnel.dropoff_query_hook",
    ],
}

# --- Logs and metrics ------------------------------------------------------------------------
# LOG_FORMAT: `text` (readable lines; the default here and in dev) or `json` (one object per line;
# the default in prod). ACCESS_LOG: one INFO line per request with status and duration.
LOG_FORMAT = env("LOG_FORMAT", "text") or "text"
LOG_LEVEL = env("LOG_LEVEL", "INFO") or "INFO"
ACCESS_LOG = env_bool("ACCESS_LOG", True)
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
# METRICS_ENABLED=0 stops counting on the request path (to measure what metrics cost; /metrics stays).
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# GET /metrics: with a token, only `Authorization: Bearer <token>`; without, loopback clients only, and
# only where METRICS_LOOPBACK_ALLOWED (production refuses to start with neither: see prod.py).
METRICS_TOKEN = env("METRICS_TOKEN", "") or ""
METRICS_LOOPBACK_ALLOWED = env_bool("METRICS_LOOPBACK_ALLOWED", True)
# Scrape-time gauges read from the database (see saastracker/metrics.py): callables returning
# prometheus_client Metric families. Other apps add theirs here (e.g. the analytics fold lag).
METRICS_SCRAPE_COLLECTORS = [
    "ingest.metrics.export_collect",
    "webhooks.metrics.webhooks_collect",
    "analytics.metrics.fold_collect",
    "ingest.metrics.readiness_collect",
    "saastracker.heartbeat.heartbeat_collect",
]
