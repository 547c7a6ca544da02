"""What goes out: subscriptions, the messages owed to them and every delivery attempt."""

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps_registry.fields import EncryptedTextField
from apps_registry.models import Application, Company
from apps_registry.webhook_events import WebhookEventType

from .targets import target_url_check, url_masked


class WebhookEndpoint(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="webhook_endpoints")
    application = models.ForeignKey(
        Application,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhook_endpoints",
        help_text="Leave empty to receive events from every application of the company.",
    )
    url = models.URLField(max_length=2048)
    event_types = ArrayField(models.CharField(max_length=32, choices=WebhookEventType.choices))
    description = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    secret = EncryptedTextField(editable=False)
    secret_hint = models.CharField(max_length=8, editable=False)
    previous_secret = EncryptedTextField(null=True, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return url_masked(self.url)

    def clean(self) -> None:
        """Refuse internal targets and credentials when saved (admin form and `endpoint_create` alike)."""
        if self.url:
            try:
                target_url_check(self.url)
            except ValidationError as exc:
                raise ValidationError({"url": exc.messages}) from None


class WebhookMessage(models.Model):
    """One webhook owed to one endpoint. Its id is the `webhook-id` of every attempt."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.CharField(max_length=40, primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    event_type = models.CharField(max_length=32, choices=WebhookEventType.choices)
    payload = models.JSONField()
    source = models.CharField(max_length=64, help_text="What triggered it, e.g. sdk_event:123.")
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "source"], name="webhookmessage_endpoint_source")]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(state="pending"), name="webhookmessage_due"),
            # The admin's list filters and search, newest first (see webhooks/admin.py).
            models.Index(fields=["state", "id"], name="webhookmessage_state_id"),
            models.Index(fields=["endpoint", "id"], name="webhookmessage_endpoint_id"),
            models.Index(fields=["source"], name="webhookmessage_source"),
            # The admin's event type filter (some types are rare) and "created within" filter.
            models.Index(fields=["event_type", "id"], name="webhookmessage_type_id"),
            BrinIndex(fields=["created_at"], autosummarize=True, name="webhookmessage_created_brin"),
        ]

    def __str__(self) -> str:
        return self.id


class WebhookAttempt(models.Model):
    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="attempts")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_body = models.TextField(blank=True, help_text="First 20 KB.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-attempted_at"]

    def __str__(self) -> str:
        return f"{self.message_id} @ {self.attempted_at:%Y-%m-%d %H:%M:%S}: {self.status_code or self.error}"
