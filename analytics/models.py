"""Analytics models. `analytics` reads `ingest`'s rows; `ingest` never imports this app."""

from django.conf import settings
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
