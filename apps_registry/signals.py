"""Drop cached credentials the moment a tenant or credential changes in this process."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiSecret, Application, Company, SdkKey
from .selectors import credentials_cache_clear


@receiver([post_save, post_delete], sender=Company)
@receiver([post_save, post_delete], sender=Application)
@receiver([post_save, post_delete], sender=ApiSecret)
@receiver([post_save, post_delete], sender=SdkKey)
def _credentials_changed(**kwargs) -> None:
    if kwargs.get("update_fields") == frozenset({"last_used_at"}):
        return  # touching last_used_at changes nothing a request depends on
    credentials_cache_clear()
