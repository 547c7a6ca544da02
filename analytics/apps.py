from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """What is derived from stored events: rollups, organizations, the stream, the explorer, the pages."""

    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"
