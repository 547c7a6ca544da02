"""Admin of revenue: the reporting currency per app, the company's FX table, imports (read-only), orgs.

Scoping is apps_registry/admin_scoping.py's (`CompanyScopedAdmin`): account admins see and change
their own company only, support reads every company, superusers everything.
"""

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from apps_registry.admin_scoping import CompanyScopedAdmin

from .models import CustomerOrg, FxRate, Import, RevenueSettings


@admin.register(RevenueSettings)
class RevenueSettingsAdmin(CompanyScopedAdmin):
    company_path = "application__company"
    list_display = ("application", "reporting_currency")
    list_select_related = ("application",)
    fields = ("application", "reporting_currency")


@admin.register(FxRate)
class FxRateAdmin(CompanyScopedAdmin):
    company_path = "company"
    list_display = ("currency", "rate", "company", "updated_at")
    list_select_related = ("company",)
    fields = ("company", "currency", "rate")
    search_fields = ("currency",)


class _ReadOnly(CompanyScopedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(Import)
class ImportAdmin(_ReadOnly):
    company_path = "application__company"
    list_display = ("created_at", "application", "kind", "status", "file_name", "user", "via", "error_count")
    list_select_related = ("application", "user")
    list_filter = ("kind", "status")
    readonly_fields = (
        "application",
        "kind",
        "status",
        "user",
        "via",
        "file_name",
        "created_at",
        "counts",
        "errors",
        "error_count",
    )


@admin.register(CustomerOrg)
class CustomerOrgAdmin(_ReadOnly):
    company_path = "application__company"
    list_display = ("external_org_id", "display_name", "application", "updated_at")
    list_select_related = ("application",)
    search_fields = ("external_org_id", "display_name")
    readonly_fields = ("application", "external_org_id", "display_name", "created_at", "updated_at")
