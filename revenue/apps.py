from django.apps import AppConfig


class RevenueConfig(AppConfig):
    """Imported customer organizations, their subscriptions (MRR), FX rates, imports, notes and tags.

    It imports nothing from `analytics`; `analytics` reads it to put money next to health.
    """

    name = "revenue"
    default_auto_field = "django.db.models.BigAutoField"
