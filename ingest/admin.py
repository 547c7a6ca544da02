"""Read-only back office views of stored rows, with their export state.

Rows are written by the APIs and the exporter only; the admin looks, filters by export state and
can put dead-lettered rows back to pending ("retry export") once the cause is fixed. Each list
shows the export lag (age of the oldest row not yet exported: pending or being sent), the
dead-letter count and, for events, the analytics rollup lag (age of the oldest row not yet folded
in), scoped to what the user may see, computed on each page view so they are right even while the
workers are stuck; with no BigQuery configured it says export is off instead.
"""

from django.contrib import admin, messages
from django.utils import timezone

from apps_registry.admin_scoping import CompanyScopedAdmin, account_company_id

from . import bigquery
from .models import Event, ExportState, IdentifyLink, SdkEvent
from .services.export import export_oldest_unexported_get, export_retry_dead


class OutboxRowAdmin(CompanyScopedAdmin):
    company_path = "company"
    change_list_template = "admin/ingest/outbox_change_list.html"
    list_filter = ("export_state", "webhook_pending")
    list_select_related = ("application",)
    show_full_result_count = False
    actions = ("retry_export",)
    ordering = ("-id",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_permission(self, request) -> bool:
        """Support staff look only; superusers and account admins may retry their rows."""
        return request.user.is_superuser or account_company_id(request.user) is not None

    @admin.action(description="Retry export of selected dead-letter rows", permissions=["retry"])
    def retry_export(self, request, queryset):
        ids = list(queryset.filter(export_state=ExportState.DEAD).values_list("id", flat=True))
        count = export_retry_dead(model=self.model, ids=ids)
        if count:
            from ingest import outbox

            outbox.kick(export=True)
        self.message_user(request, f"{count} row(s) back to pending export.", messages.SUCCESS)

    def changelist_view(self, request, extra_context=None):
        scoped = self.get_queryset(request)
        enabled = bigquery.is_enabled()
        oldest = export_oldest_unexported_get(queryset=scoped) if enabled else None
        extra_context = {
            **(extra_context or {}),
            "export_enabled": enabled,
            "export_lag_seconds": int((timezone.now() - oldest).total_seconds()) if oldest else 0,
            "export_oldest_unexported": oldest,
            "export_dead_count": scoped.filter(export_state=ExportState.DEAD).count(),
            "export_dead_filter": f"?export_state__exact={ExportState.DEAD}",
            "rollup_lag_seconds": None,
        }
        if hasattr(self.model, "fold_pending"):  # analytics rollups: age of the oldest row not yet folded in
            unfolded = scoped.filter(fold_pending=True).order_by("id").values_list("received_at", flat=True).first()
            extra_context["rollup_lag_seconds"] = int((timezone.now() - unfolded).total_seconds()) if unfolded else 0
            extra_context["rollup_oldest_pending"] = unfolded
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(Event)
class EventAdmin(OutboxRowAdmin):
    list_display = ("event", "customer_org_id", "application", "occurred_at", "received_at", "export_state")
    search_fields = ("=event_id", "=customer_org_id", "=user_hash")


@admin.register(SdkEvent)
class SdkEventAdmin(OutboxRowAdmin):
    list_display = ("event_name", "platform", "application", "occurred_at", "received_at", "export_state")
    list_filter = ("export_state", "consent_analytics", "platform", "webhook_pending")
    search_fields = ("=event_id", "=user_id")


@admin.register(IdentifyLink)
class IdentifyLinkAdmin(OutboxRowAdmin):
    list_display = ("anon_id", "user_id", "application", "received_at", "export_state")
    search_fields = ("=user_id",)
