"""Analytics models. `analytics` reads `ingest`'s rows; `ingest` never imports this app."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class PersonalApiKey(models.Model):
    """A key with which a program reads the analytics API as its user. Only a hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "personal API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}_…"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None


# --- Rollups ---------------------------------------------------------------------------------------
# Written only by the fold (analytics/fold.py). Days are UTC days of `occurred_at`. `environment` is
# the event's environment ('' when it had none); DailyTotal and OrgDay also carry a row under
# ALL_ENVIRONMENTS (the most read figures), NameDay and PathDay are unioned over environments at read
# time. Exact distinct counts are Roaring bitmaps of dense ids (DenseId, analytics/bitmaps.py) stored
# as bytea: a window's distinct count is the cardinality of a union. No row per user: a day costs a
# few rows per app, name, path and org. Rows are kept when retention deletes the raw rows.

ALL_ENVIRONMENTS = "*"


class Source(models.TextChoices):
    EVENTS = "events"
    SDK_EVENTS = "sdk_events"


class FoldQueue(models.Model):
    """The fold's work list: ids of stored raw rows not folded yet, in blocks, claimed with SKIP LOCKED.

    Filled by the fold itself (`analytics.fold.enqueue`), which walks each raw table's ids past its
    `FoldCursor` up to the table's horizon (ingest/horizon.py), so ingest pays nothing for analytics:
    no trigger, no extra row in its transaction. One row per block of at most QUEUE_IDS_PER_ROW ids
    (sorted): the fold claims thousands of events by deleting a few rows, in the same transaction as
    the rollups (a DELETE touches no index of the raw table). Rows not folded yet are the queued ids
    and every id above the cursor (`analytics.fold.unfolded_sql`).
    """

    QUEUE_IDS_PER_ROW = 1000

    SOURCE_EVENTS = 1
    SOURCE_SDK_EVENTS = 2

    id = models.BigAutoField(primary_key=True)
    source = models.SmallIntegerField()
    event_ids = ArrayField(models.BigIntegerField())

    def __str__(self) -> str:
        return f"{self.source}:{len(self.event_ids)}"


class FoldCursor(models.Model):
    """Per raw table (FoldQueue source): every stored row with `id <= queued_upto` is queued or folded.

    `safe_upto`, `horizon_id` and `horizon_holders` are the table's horizon (ingest/horizon.py): how
    far the cursor may go without passing an id whose transaction could still commit.
    """

    source = models.SmallIntegerField(primary_key=True)
    queued_upto = models.BigIntegerField(default=0)
    safe_upto = models.BigIntegerField(default=0)
    horizon_id = models.BigIntegerField(default=0)
    horizon_holders = ArrayField(models.TextField(), default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.source} queued up to {self.queued_upto}"


class DenseId(models.Model):
    """Per app and kind, a dense integer id for a user key, org id, session id or (org, user|session) pair.

    Ids never change once committed, so workers cache them; bitmaps hold these ids. Pair kinds also
    carry their org's dense id, which is how per-org distinct counts are read from one bitmap.
    """

    USER = 1
    ORG = 2
    SESSION = 3
    ORG_USER = 4
    ORG_SESSION = 5
    PATH = 6

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    kind = models.SmallIntegerField()
    key = models.CharField(max_length=512)
    dense = models.IntegerField()
    org = models.IntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "kind", "key"], name="denseid_key_uniq"),
            models.UniqueConstraint(fields=["application", "kind", "dense"], name="denseid_dense_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}={self.dense}"


class FunnelEvent(models.Model):
    """One counted event, narrow, for funnels (analytics/query/funnel_fast.py): written by the fold.

    A funnel's window is exact only with every event time per entity and step (no per-day rollup
    can say whether an `A` at 23:00 is followed by a `B` within the window), so the fold keeps one
    row per counted event: the app, source, name, environment, time (as the microseconds the funnel
    statement computes on, not a timestamp to convert per row) and the entity as dense ids (DenseId,
    4 bytes, where the raw tables sort 64-byte user hashes). The index
    `funnelevent_step` (application, source, name, occurred_us) INCLUDE (user_dense, org_dense,
    environment) lets a funnel read only its steps' rows, index-only. Migration 0007 creates the
    table by hand: rows need no id (the "primary key" below is for Django only; two equal events are
    two rows) and no foreign-key check per inserted row (Django's cascade deletes an app's rows).
    """

    pk = models.CompositePrimaryKey("application_id", "source", "name", "occurred_us", "user_dense")
    application = models.ForeignKey(
        "apps_registry.Application", on_delete=models.CASCADE, db_constraint=False, related_name="+"
    )
    source = models.SmallIntegerField()  # FoldQueue.SOURCE_EVENTS / SOURCE_SDK_EVENTS
    name = models.CharField(max_length=255)
    environment = models.CharField(max_length=32)  # '' when none (as the rollups)
    occurred_us = models.BigIntegerField()  # occurred_at in microseconds since 1970: what a funnel computes on
    user_dense = models.IntegerField()
    org_dense = models.IntegerField(null=True)

    class Meta:
        managed = False
        db_table = "analytics_funnelevent"

    def __str__(self) -> str:
        return f"{self.name}@{self.occurred_us}"


class DailyTotal(models.Model):
    """Per app, environment (and ALL_ENVIRONMENTS), source and day: events and exact distinct sets.

    The integer counts are the cardinalities of the bitmaps (a day's series without decoding them);
    totals over a window are unions of the bitmaps. `org_users`/`org_sessions` hold pair ids
    (DenseId.ORG_USER/ORG_SESSION): per-org distinct users and sessions of any window from one union.
    """

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    source = models.CharField(max_length=16, choices=Source.choices)
    day = models.DateField()
    events = models.BigIntegerField(default=0)
    users = models.IntegerField(default=0)
    orgs = models.IntegerField(default=0)
    sessions = models.IntegerField(default=0)
    users_bm = models.BinaryField(default=b"")
    orgs_bm = models.BinaryField(default=b"")
    sessions_bm = models.BinaryField(default=b"")
    org_users_bm = models.BinaryField(default=b"")
    org_sessions_bm = models.BinaryField(default=b"")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "environment", "source", "day"], name="dailytotal_app_env_source_day_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application_id} {self.environment} {self.source} {self.day}"


class OrgDay(models.Model):
    """Events of an organization on a day (per environment and ALL_ENVIRONMENTS), and its views per path.

    `path_views` is sparse (path dense ids and counts, analytics/bitmaps.py): an org's top pages come
    from its own few rows, without a row per org, path and day.
    """

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    day = models.DateField()
    customer_org_id = models.CharField(max_length=255)
    events = models.BigIntegerField(default=0)
    path_views = models.BinaryField(default=b"")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "environment", "day", "customer_org_id"], name="orgday_uniq")
        ]
        indexes = [
            models.Index(fields=["application", "customer_org_id", "environment", "day"], name="orgday_org"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_org_id} {self.day}"


class NameDay(models.Model):
    """Per event name, environment and day: events, and the users and orgs who sent it (features)."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)
    event = models.CharField(max_length=255)
    environment = models.CharField(max_length=32)
    day = models.DateField()
    events = models.BigIntegerField(default=0)
    users_bm = models.BinaryField(default=b"")
    orgs_bm = models.BinaryField(default=b"")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "source", "event", "environment", "day"], name="nameday_uniq"
            )
        ]
        indexes = [models.Index(fields=["application", "source", "day"], name="nameday_app_day")]

    def __str__(self) -> str:
        return f"{self.event} {self.day}"


class PathDay(models.Model):
    """Views per path per day and environment, with the users, orgs and (org, user) pairs that viewed it."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    day = models.DateField()
    path = models.CharField(max_length=2048)
    views = models.BigIntegerField(default=0)
    users_bm = models.BinaryField(default=b"")
    orgs_bm = models.BinaryField(default=b"")
    org_users_bm = models.BinaryField(default=b"")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "day", "environment", "path"], name="pathday_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.path} {self.day}"


class UsageCutoff(models.Model):
    """Rows stored before usage moved onto the fold were already counted: the fold skips their usage."""

    table = models.CharField(max_length=32, unique=True)
    last_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.table} ≤ {self.last_id}"


# --- Organizations, health, signals, features --------------------------------------------------------


class Organization(models.Model):
    """A `customer_org_id` an app has sent, with first/last seen (fold) and health (scan)."""

    class Bucket(models.TextChoices):
        HEALTHY = "healthy"
        WATCH = "watch"
        AT_RISK = "at_risk"
        INACTIVE = "inactive"
        NEW = "new"

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    over_limit = models.BooleanField(default=False, help_text="Tracked beyond the company's orgs_max (soft limit).")
    health_score = models.SmallIntegerField(null=True, blank=True)
    health_bucket = models.CharField(max_length=16, choices=Bucket.choices, blank=True, default="")
    health_components = models.JSONField(default=dict, blank=True)
    health_reasons = models.JSONField(
        default=list,
        db_default=models.Value([], output_field=models.JSONField()),  # the fold inserts orgs in SQL
        blank=True,
        help_text="[{code, text}], worst first.",
    )
    scanned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "customer_org_id"], name="organization_app_org_uniq")
        ]

    def __str__(self) -> str:
        return self.customer_org_id


class OrgSignal(models.Model):
    """A signal of an organization. Active while `cleared_at` is null; dismissal lasts until it clears."""

    class Kind(models.TextChoices):
        USAGE_DROP = "usage_drop"
        INACTIVE = "inactive"
        EXPANSION_CANDIDATE = "expansion_candidate"
        # issue 20: revenue-aware signals, raised by analytics/signals.py
        REVENUE_AT_RISK = "revenue_at_risk"
        INACTIVE_PAYING = "inactive_paying"

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    active_since = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)
    detail = models.JSONField(
        default=dict,
        db_default=models.Value({}, output_field=models.JSONField()),  # rows may be inserted in SQL
        blank=True,
        help_text="Its magnitude, updated by each scan.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "customer_org_id", "kind"], name="orgsignal_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.customer_org_id} {self.kind}"


class SignalDismissal(models.Model):
    """Who dismissed a signal, when and why: kept after the signal clears and is raised again."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    active_since = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)
    dismissed_at = models.DateTimeField(default=timezone.now)
    dismissed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["application", "customer_org_id", "-dismissed_at"], name="dismissal_org")]

    def __str__(self) -> str:
        return f"{self.customer_org_id} {self.kind} dismissed"


class OrgHealthDay(models.Model):
    """An organization's score and bucket on a UTC day (the last scan of that day), kept 400 days."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    day = models.DateField()
    score = models.SmallIntegerField(null=True, blank=True)
    bucket = models.CharField(max_length=16)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "customer_org_id", "day"], name="orghealthday_uniq")
        ]
        indexes = [models.Index(fields=["application", "day"], name="orghealthday_app_day")]

    def __str__(self) -> str:
        return f"{self.customer_org_id} {self.day} {self.bucket}"


class HealthModel(models.Model):
    """An app's tuning of the health model; keys it leaves out take the settings' defaults."""

    application = models.OneToOneField("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    config = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"health model of app {self.application_id}"


class HealthModelChange(models.Model):
    """One saved change of an app's health model: who, when, the full model before and after."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"health model change {self.changed_at:%Y-%m-%d %H:%M}"


# What a feature definition may hold (issue 18): every size a client controls is capped, and a value past
# a cap is a 400 naming the member (API) or a form error (admin). A prefix longer than the 512 characters
# the rollups keep of a path (fold.PATH_KEY_LENGTH) could never match one.
FEATURES_PER_APP_MAX = 50
FEATURE_EVENTS_MAX = 1000
FEATURE_PREFIXES_MAX = 1000
FEATURE_PREFIX_MAX_LENGTH = 512


class Feature(models.Model):
    """A named feature of an app: any of some event names and/or any of some path prefixes."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="features")
    name = models.CharField(max_length=100)
    events = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    path_prefixes = ArrayField(models.CharField(max_length=2048), default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "name"], name="feature_app_name_uniq")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.events and not self.path_prefixes:
            raise ValidationError("A feature needs at least one event name or path prefix.")
        errors: dict[str, str] = {}
        if len(self.events) > FEATURE_EVENTS_MAX:
            errors["events"] = f"At most {FEATURE_EVENTS_MAX} event names per feature."
        if len(self.path_prefixes) > FEATURE_PREFIXES_MAX:
            errors["path_prefixes"] = f"At most {FEATURE_PREFIXES_MAX} path prefixes per feature."
        else:
            long = next((i for i, p in enumerate(self.path_prefixes) if len(p) > FEATURE_PREFIX_MAX_LENGTH), None)
            if long is not None:
                errors["path_prefixes"] = (
                    f"Item {long}: at most {FEATURE_PREFIX_MAX_LENGTH} characters (the rollups keep no more of a path)."
                )
        if self._state.adding and self.application_id is not None:
            defined = Feature.objects.filter(application_id=self.application_id).count()
            if defined >= FEATURES_PER_APP_MAX:
                errors["name"] = f"The application already defines {FEATURES_PER_APP_MAX} features, the most it may."
        if errors:
            raise ValidationError(errors)


class Insight(models.Model):
    """A saved explorer, funnel or retention query of an app (analytics/insights.py): a stable URL, and
    up to INSIGHT_PINS_MAX of them pinned to the app's overview. The query is stored as the client's
    JSON, validated when saved and again whenever it runs."""

    class Kind(models.TextChoices):
        QUERY = "query"
        FUNNEL = "funnel"
        RETENTION = "retention"

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    query = models.JSONField()
    pinned = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["application", "-created_at"], name="insight_app_created")]

    def __str__(self) -> str:
        return self.name
