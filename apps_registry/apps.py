from django.apps import AppConfig
from django.db.models.signals import post_migrate


def seed_defaults(sender, using="default", **kwargs) -> None:
    """Every database, fresh or old, gets the four plans and the Support group after `migrate`.

    A post_migrate hook rather than a data migration: test databases are flushed between
    transactional tests and this reseeds them, and existing plan rows are never overwritten.
    """
    from django.contrib.auth.models import Group

    from .admin_scoping import SUPPORT_GROUP
    from .models import Plan
    from .services import DEFAULT_PLANS

    for tier, limits in DEFAULT_PLANS.items():
        Plan.objects.using(using).get_or_create(tier=tier, defaults=limits)
    Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)


class AppsRegistryConfig(AppConfig):
    name = "apps_registry"
    verbose_name = "Tenants and credentials"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects cache invalidation

        post_migrate.connect(seed_defaults, sender=self, dispatch_uid="apps_registry.seed_defaults")
