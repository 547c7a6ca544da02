"""Admin of analytics: personal API keys (shown once, revocable), features, organizations (read-only).

Scoping is apps_registry/admin_scoping.py's: superusers see everything, support staff read every
company, account admins (owner/admin members) their own company. Personal keys are also visible
to their own user, whatever the role, so any staff member can create and revoke their keys.
"""

from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

from apps_registry.admin_scoping import (
    CompanyScopedAdmin,
    ObjectPagesMixin,
    is_support,
)

from .models import Feature, Organization, OrgSignal, PersonalApiKey
from .services import personal_key_create, personal_key_revoke


@admin.register(PersonalApiKey)
class PersonalApiKeyAdmin(ObjectPagesMixin, CompanyScopedAdmin):
    company_path = "user__membership__company"
    list_display = ("__str__", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    search_fields = ("prefix", "user__username", "name")
    fields = ("name",)
    actions = ("revoke_selected",)

    # A key belongs to a user, not to a company: everyone manages their own keys, account admins
    # also those of their company's members, support reads all and superusers manage all.

    def read_scope(self, request: HttpRequest) -> Q | None:
        scope = super().read_scope(request)
        return None if scope is None else scope | Q(user=request.user)

    def write_scope(self, request: HttpRequest) -> Q | None:
        scope = super().write_scope(request)
        return None if scope is None else scope | Q(user=request.user)

    # this admin is only ever given its own objects, which carry user_id
    def may_write_object(self, request: HttpRequest, obj: PersonalApiKey) -> bool:  # type: ignore[override]
        return obj.user_id == request.user.pk or super().may_write_object(request, obj)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        form.instance.user = request.user  # a key is always the requesting user's own
        return super().save_form(request, form, change)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request) and not (is_support(request.user) and not request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # keys are created and revoked, never edited

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # revoked keys stay listed, for the audit trail

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request)

    def save_model(self, request: HttpRequest, obj: PersonalApiKey, form: object, change: bool) -> None:
        """A key is always the requesting user's own; the raw key goes to the show-once page only."""
        # the admin serves logged-in staff only, never AnonymousUser
        key, raw = personal_key_create(user=request.user, name=obj.name)  # type: ignore[arg-type]
        obj.pk, obj.prefix, obj.user, obj.created_at = key.pk, key.prefix, key.user, key.created_at
        obj._state.adding, obj._state.db = False, key._state.db
        # a per-request note for response_add, which shows the raw key once
        request._new_personal_key = raw  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: PersonalApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(request, "_new_personal_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_once(
            request, obj, template="admin/analytics/personal_key_once.html", title="New personal API key", raw_key=raw
        )

    @admin.action(description="Revoke the selected personal API keys", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[PersonalApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            personal_key_revoke(key=key)
            count += 1
        self.message_user(request, f"Revoked {count} personal API key(s).")


@admin.register(Feature)
class FeatureAdmin(CompanyScopedAdmin):
    """Account admins manage the features of their own company's applications."""

    company_path = "application__company"
    list_display = ("name", "application", "events", "path_prefixes", "created_at")
    list_select_related = ("application__company",)
    list_filter = (("application", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name", "application__name")
    fields = ("application", "name", "events", "path_prefixes")


class ReadOnlyScopedAdmin(CompanyScopedAdmin):
    """Rows derived by the scan: looked at, never edited here."""

    company_path = "application__company"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(ReadOnlyScopedAdmin):
    list_display = (
        "customer_org_id",
        "application",
        "health_score",
        "health_bucket",
        "first_seen",
        "last_seen",
        "over_limit",
    )
    list_filter = ("health_bucket", "over_limit")
    list_select_related = ("application__company",)
    search_fields = ("=customer_org_id", "application__name")


@admin.register(OrgSignal)
class OrgSignalAdmin(ReadOnlyScopedAdmin):
    list_display = ("customer_org_id", "kind", "application", "active_since", "cleared_at", "dismissed_at")
    list_filter = ("kind",)
    list_select_related = ("application__company",)
    search_fields = ("=customer_org_id",)
