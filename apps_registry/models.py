"""Who may send events: plans, companies, their members, applications and credentials."""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .fields import EncryptedTextField


class Plan(models.Model):
    class Tier(models.TextChoices):
        TRIAL = "trial"
        STARTER = "starter"
        GROWTH = "growth"
        ENTERPRISE = "enterprise"

    tier = models.CharField(max_length=16, choices=Tier.choices, unique=True)
    events_per_month = models.PositiveBigIntegerField()
    apps_max = models.PositiveIntegerField()
    retention_days = models.PositiveIntegerField()
    orgs_max = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.get_tier_display()


LIMIT_FIELDS = ("events_per_month", "apps_max", "retention_days", "orgs_max")


class Company(models.Model):
    name = models.CharField(max_length=200, unique=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="companies")
    events_per_month_override = models.PositiveBigIntegerField(null=True, blank=True)
    apps_max_override = models.PositiveIntegerField(null=True, blank=True)
    retention_days_override = models.PositiveIntegerField(null=True, blank=True)
    orgs_max_override = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def effective_limit(self, name: str) -> int:
        """The per-company override where set, else the plan's value."""
        if name not in LIMIT_FIELDS:
            raise ValueError(name)
        override = getattr(self, f"{name}_override")
        return override if override is not None else getattr(self.plan, name)

    @property
    def events_per_month(self) -> int:
        return self.effective_limit("events_per_month")

    @property
    def apps_max(self) -> int:
        return self.effective_limit("apps_max")

    @property
    def retention_days(self) -> int:
        return self.effective_limit("retention_days")

    @property
    def orgs_max(self) -> int:
        return self.effective_limit("orgs_max")


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)

    def __str__(self) -> str:
        return f"{self.user} @ {self.company} ({self.role})"


class Application(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="applications")
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name="app uuid")
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    environments = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["company__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.company})"

    def clean(self) -> None:
        if self._state.adding and self.company_id:
            company = Company.objects.select_related("plan").get(pk=self.company_id)
            if company.applications.count() >= company.apps_max:
                raise ValidationError(
                    f"{company.name} already has {company.apps_max} application(s), the most its plan allows."
                )


class ApiSecret(models.Model):
    """An HMAC key for /v1/events. Several may be live at once so rotation needs no downtime."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="secrets")
    secret = EncryptedTextField(editable=False)
    hint = models.CharField(max_length=8, editable=False, help_text="Last characters, to tell secrets apart.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API secret"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"secret …{self.hint}"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class SdkKey(models.Model):
    """An `x-api-key` for the SDK API. Only a hash is stored; the prefix is what people see."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="sdk_keys")
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "SDK key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}_…"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None


class Usage(models.Model):
    """Events counted per company per calendar month (UTC); overage is flagged, never enforced."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="usage")
    month = models.DateField(help_text="First day of the month, UTC.")
    event_count = models.PositiveBigIntegerField(default=0)
    overage_at = models.DateTimeField(null=True, blank=True, help_text="When the limit was first passed.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["company", "month"], name="usage_company_month_uniq")]
        ordering = ["-month", "company__name"]
        verbose_name_plural = "usage"

    def __str__(self) -> str:
        return f"{self.company} {self.month:%Y-%m}: {self.event_count}"

    @property
    def is_over(self) -> bool:
        return self.overage_at is not None
