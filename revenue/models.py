"""Revenue data of an application: customer organizations, subscriptions (a snapshot), FX, imports.

Money is `Decimal` end to end: amounts are `numeric(14, 2)`, rates `numeric(20, 10)`.
"""

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from .currencies import ISO_4217

CURRENCY_VALIDATOR = RegexValidator(r"^[A-Z]{3}$", "A three-letter ISO 4217 code, e.g. EUR.")
CURRENCY_CHOICES = [(code, code) for code in sorted(ISO_4217)]
DEFAULT_REPORTING_CURRENCY = "EUR"


class RevenueSettings(models.Model):
    """Per application: the currency every figure is reported in (set in the admin, default EUR)."""

    application = models.OneToOneField(
        "apps_registry.Application", on_delete=models.CASCADE, related_name="revenue_settings"
    )
    reporting_currency = models.CharField(
        max_length=3, default=DEFAULT_REPORTING_CURRENCY, choices=CURRENCY_CHOICES, validators=[CURRENCY_VALIDATOR]
    )

    class Meta:
        verbose_name = "revenue settings"
        verbose_name_plural = "revenue settings"

    def __str__(self) -> str:
        return f"{self.application_id}: {self.reporting_currency}"


class FxRate(models.Model):
    """The company's FX table: 1 unit of `currency` = `rate` units of an app's reporting currency.

    One table per company (its apps usually share a reporting currency); the rate in force at import
    time converts a row, and the converted amount is what is stored.
    """

    company = models.ForeignKey("apps_registry.Company", on_delete=models.CASCADE, related_name="fx_rates")
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, validators=[CURRENCY_VALIDATOR])
    rate = models.DecimalField(max_digits=20, decimal_places=10, validators=[MinValueValidator(0)])
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "FX rate"
        constraints = [models.UniqueConstraint(fields=["company", "currency"], name="fxrate_company_currency")]

    def __str__(self) -> str:
        return f"{self.currency} × {self.rate}"


class CustomerOrg(models.Model):
    """A customer organization as imported: `external_org_id` is the events' `customer_org_id`."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    external_org_id = models.CharField(max_length=255)
    display_name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "customer organization"
        constraints = [
            models.UniqueConstraint(fields=["application", "external_org_id"], name="customerorg_app_ext_uniq")
        ]

    def __str__(self) -> str:
        return self.display_name or self.external_org_id


class Subscription(models.Model):
    """One row of the app's current subscriptions snapshot. `mrr` is in the reporting currency.

    Active on an instant t when `start_at ≤ t` and (`end_at` is null or `t < end_at`).
    """

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    external_org_id = models.CharField(max_length=255)
    product_code = models.CharField(max_length=255)
    subscription_id = models.CharField(max_length=255, blank=True, default="")
    mrr = models.DecimalField(max_digits=14, decimal_places=2)
    original_mrr = models.DecimalField(max_digits=14, decimal_places=2)
    original_currency = models.CharField(max_length=3)
    fx_rate = models.DecimalField(max_digits=20, decimal_places=10)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["application", "external_org_id"], name="subscription_app_org")]

    def __str__(self) -> str:
        return f"{self.external_org_id} {self.product_code} {self.mrr}"


class Import(models.Model):
    """One import (or dry run): who, when, which file, the counts and the errors. Read-only record."""

    class Kind(models.TextChoices):
        ORGANIZATIONS = "organizations"
        SUBSCRIPTIONS = "subscriptions"

    class Status(models.TextChoices):
        APPLIED = "applied"
        DRY_RUN = "dry_run"
        FAILED = "failed"

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    via = models.CharField(max_length=16, default="api", help_text="api, page or command")
    file_name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True, help_text="Up to 1,000: line, column, reason.")
    error_count = models.IntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["application", "-created_at"], name="import_app_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.status} {self.created_at:%Y-%m-%d %H:%M}"


class SnapshotPart(models.Model):
    """A figure a subscriptions snapshot determines, written by its import in the same transaction.

    Every web process reads it once per snapshot (revenue/snapshots.py) instead of scanning the
    subscriptions: the first read after an import costs a row, not a scan per figure. `name` is
    `active` (the set active on every instant of [since, until)), `flows` or `first_paid`;
    `payload` is compact JSON (money in integer cents).
    """

    snapshot = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=16)
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    payload = models.TextField()

    def __str__(self) -> str:
        return f"{self.snapshot_id} {self.name}"


class Note(models.Model):
    """A customer-success note on an organization (events' or imported), newest first."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    text = models.TextField(max_length=10_000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["application", "customer_org_id", "-created_at"], name="note_org")]

    def __str__(self) -> str:
        return f"{self.customer_org_id}: {self.text[:40]}"


class Tag(models.Model):
    """A free-form label on an organization of an app, e.g. `onboarding`, `renewal-q3`."""

    application = models.ForeignKey("apps_registry.Application", on_delete=models.CASCADE, related_name="+")
    customer_org_id = models.CharField(max_length=255)
    label = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "customer_org_id", "label"], name="tag_app_org_label")
        ]
        indexes = [models.Index(fields=["application", "label"], name="tag_app_label")]

    def __str__(self) -> str:
        return self.label
