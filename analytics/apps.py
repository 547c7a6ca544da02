from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AnalyticsConfig(AppConfig):
    """What is derived from stored events: rollups, organizations, the stream, the explorer, the pages."""

    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .bitmaps import clear_caches

        # A flush (tests) or migration may have emptied the dense-id dictionary: forget cached ids.
        post_migrate.connect(clear_caches, dispatch_uid="analytics_clear_dense_id_caches")

        from revenue.signals import import_applied

        from .tasks import scan_after_import

        # An applied revenue import changes MRR: rescan (debounced) so the revenue signals follow.
        import_applied.connect(scan_after_import, dispatch_uid="analytics_scan_after_revenue_import")
