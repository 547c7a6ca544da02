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
# Written only by the fold (analytics/fold.py), one SQL statement per chunk of raw rows. Days are UTC
# days of `occurred_at`. `environment` is the event's environment ('' when it had none); the tables
# that hold per-day distinct counts also carry a row under ALL_ENVIRONMENTS, because distinct counts
# of several environments cannot be added up. Rows are kept when retention deletes the raw rows.

ALL_ENVIRONMENTS = "*"


class Source(models.TextChoices):
    EVENTS = "events"
    SDK_EVENTS = "sdk_events"


class DailyTotal(models.Model):
    """Per app, environment (and ALL_ENVIRONMENTS), source and day: events and exact distinct counts."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    source = models.CharField(max_length=16, choices=Source.choices)
    day = models.DateField()
    events = models.BigIntegerField(default=0)
    users = models.IntegerField(default=0)
    orgs = models.IntegerField(default=0)
    sessions = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "environment", "source", "day"], name="dailytotal_app_env_source_day_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application_id} {self.environment} {self.source} {self.day}"


class UserDay(models.Model):
    """A user active on a day: the fold learns a day's distinct users from the rows it inserts."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    source = models.CharField(max_length=16, choices=Source.choices)
    day = models.DateField()
    user_key = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "environment", "source", "day", "user_key"], name="userday_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_key} {self.day}"


class SessionDay(models.Model):
    """A session active on a day, with its organization (sessions per org are distinct counts)."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    source = models.CharField(max_length=16, choices=Source.choices)
    day = models.DateField()
    session_id = models.UUIDField()
    customer_org_id = models.CharField(max_length=255, default="", blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "environment", "source", "day", "session_id"], name="sessionday_uniq"
            )
        ]
        indexes = [
            models.Index(fields=["application", "environment", "customer_org_id", "day"], name="sessionday_org"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} {self.day}"


class OrgDay(models.Model):
    """Events of an organization on a day (per environment and ALL_ENVIRONMENTS)."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    day = models.DateField()
    customer_org_id = models.CharField(max_length=255)
    events = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "environment", "day", "customer_org_id"], name="orgday_uniq")
        ]
        indexes = [
            models.Index(fields=["application", "customer_org_id", "environment", "day"], name="orgday_org"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_org_id} {self.day}"


class EventDay(models.Model):
    """Events per name, org and user per day: what a feature defined later needs, and org users."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)
    event = models.CharField(max_length=255)
    day = models.DateField()
    environment = models.CharField(max_length=32)
    customer_org_id = models.CharField(max_length=255)
    user_key = models.CharField(max_length=255)
    events = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "source", "event", "day", "environment", "customer_org_id", "user_key"],
                name="eventday_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["application", "customer_org_id", "day"], name="eventday_org"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.day}"


class PathDay(models.Model):
    """Views per path per day and environment: the pages ranking without touching per-user rows."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=32)
    day = models.DateField()
    path = models.CharField(max_length=2048)
    views = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "day", "environment", "path"], name="pathday_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.path} {self.day}"


class PageDay(models.Model):
    """Views per path, org and user per day: exact distinct users and orgs of a page, path features."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    path = models.CharField(max_length=2048)
    day = models.DateField()
    environment = models.CharField(max_length=32)
    customer_org_id = models.CharField(max_length=255)
    user_key = models.CharField(max_length=255)
    views = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "path", "day", "environment", "customer_org_id", "user_key"],
                name="pageday_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["application", "customer_org_id", "day"], name="pageday_org"),
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

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    over_limit = models.BooleanField(default=False, help_text="Tracked beyond the company's orgs_max (soft limit).")
    health_score = models.SmallIntegerField(null=True, blank=True)
    health_bucket = models.CharField(max_length=16, choices=Bucket.choices, blank=True, default="")
    health_components = models.JSONField(default=dict, blank=True)
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

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    active_since = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "customer_org_id", "kind"], name="orgsignal_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.customer_org_id} {self.kind}"


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
