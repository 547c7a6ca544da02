"""Links from the pages to the admin, where an application's settings live (the admin links back)."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import NoReverseMatch, reverse

from apps_registry.models import Application


def _admin_url(name: str, *args: object, query: str = "") -> str | None:
    try:
        return reverse(f"admin:{name}", args=args) + query
    except NoReverseMatch:  # a model the admin does not (yet) register
        return None


def admin_links(*, app: Application, user: AbstractBaseUser | AnonymousUser) -> dict[str, str | None]:
    """The admin pages of this app's settings; none for users who cannot open the admin."""
    if not user.is_active or not getattr(user, "is_staff", False):
        return {}
    return {
        "application": _admin_url("apps_registry_application_change", app.pk),
        "credentials": _admin_url("apps_registry_apisecret_changelist", query=f"?application__id__exact={app.pk}"),
        "sdk_keys": _admin_url("apps_registry_sdkkey_changelist", query=f"?application__id__exact={app.pk}"),
        "webhooks": _admin_url("webhooks_webhookendpoint_changelist", query=f"?application__id__exact={app.pk}"),
        "features": _admin_url("analytics_feature_changelist", query=f"?application__id__exact={app.pk}"),
    }
