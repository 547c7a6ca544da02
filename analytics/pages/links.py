"""Links from the pages to the admin, where an application's settings live (the admin links back)."""

import uuid
from urllib.parse import quote, urlencode

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


def organization_url(*, app_uuid: uuid.UUID, customer_org_id: str, query: dict[str, str] | None = None) -> str:
    """The page of an organization whose id a client chose: the id is ONE path segment.

    Every character but the unreserved ones is percent-encoded (`/` included), so `../../../admin/`
    cannot climb out of the app. A segment of dots only is resolved by browsers even when encoded
    (`%2E%2E`), so such an id travels in the query string instead (`organization/?id=..`).
    """
    query = query or {}
    if not customer_org_id.strip("."):
        return reverse("pages:organization_by_id", args=[app_uuid]) + "?" + urlencode({"id": customer_org_id, **query})
    url = reverse("pages:organizations", args=[app_uuid]) + quote(customer_org_id, safe="") + "/"
    return url + ("?" + urlencode(query) if query else "")
