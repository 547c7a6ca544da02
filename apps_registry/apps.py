from django.apps import AppConfig


class AppsRegistryConfig(AppConfig):
    name = "apps_registry"
    verbose_name = "Tenants and credentials"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects cache invalidation
