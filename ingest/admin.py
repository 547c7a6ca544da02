"""Read-only back office views of stored rows, with their export state.

Rows are written by the APIs and the exporter only; the admin looks, filters by export state and
can put dead-lettered rows back to pending ("retry export") once the cause is fixed. Each list
shows the export lag (age of the oldest row not yet exported: pending or being sent), the
dead-letter count and, for events, the analytics rollup lag (age of the oldest row not yet folded
in), scoped to what the user may see, computed on each page view so they are right even while the
workers are stuck; with no BigQuery configured it says export is off instead.
"""

from typing import Any, ClassVar

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.module_loading import import_string

from apps_registry.admin_lists import (
    LargeListMixin,
    as_prefix,
    as_uuid,
    choice_filter,
    model_ids,
    prefix_lookups,
    time_window_filter,
)
from apps_registry.admin_scoping import CompanyScopedAdmin, account_company_id
from apps_registry.models import Application

from . import bigquery, partitions
from .models import Event, ExportState, IdentifyLink, SdkEvent, SdkEventKey
from .services.export import export_oldest_unexported_get, export_retry_dead, export_state_annotate, export_state_q

ReceivedWithin = time_window_filter(
    "received_at", title="received", parameter="received", narrow=partitions.received_since
)


def export_state_filter(choices: list[tuple[int, str]]) -> type[admin.SimpleListFilter]:
    """The export state as the ledger says (rows store only pending, skipped or dead)."""
    base = choice_filter("export_state", choices, title="export state")

    class ExportStateFilter(base):  # type: ignore[valid-type,misc]
        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            value = self.value()
            if value is None or value not in {str(v) for v, _ in choices}:
                return super().queryset(request, queryset)
            return queryset.filter(export_state_q(model=queryset.model, state=ExportState(int(value))))

    return ExportStateFilter


# Only SDK events can lack analytics consent: the other tables never hold SKIPPED rows.
ExportStateFilter = export_state_filter([c for c in ExportState.choices if c[0] != ExportState.SKIPPED])
SdkExportStateFilter = export_state_filter(ExportState.choices)


class PlatformFilter(admin.SimpleListFilter):
    """The platforms the SDK envelope allows; a plain field filter would SELECT DISTINCT over every row."""

    title = "platform"
    parameter_name = "platform__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("ios", "iOS"), ("android", "Android")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(platform=self.value()) if self.value() else queryset


class OutboxRowAdmin(LargeListMixin, CompanyScopedAdmin):
    """Lists newest first by primary key; see apps_registry/admin_lists.py for what keeps them fast."""

    company_path = "company"
    change_list_template = "admin/ingest/outbox_change_list.html"
    list_filter: ClassVar[tuple[Any, ...]] = (ExportStateFilter, "webhook_pending", ReceivedWithin)
    list_select_related = ("application__company",)  # Application.__str__ names its company
    actions = ("retry_export",)
    ordering = ("-id",)
    # One company's rows, newest first, straight from the (company, received_at) index: along the
    # primary key a small company's page would skip over every other company's rows.
    scoped_ordering = ("-received_at", "-id")

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The page's rows with their export state, read from the ledger in one query for the page."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        states = dict(
            export_state_annotate(self.model.objects.filter(pk__in=[r.pk for r in rows])).values_list(
                "pk", "export_status"
            )
        )
        for row in rows:
            row.export_status = states.get(row.pk, row.export_state)
        return changelist

    @admin.display(description="export state")
    def export(self, obj: Model) -> str:
        return ExportState(obj.export_status).label  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Support staff look only; superusers and account admins may retry their rows."""
        return request.user.is_superuser or account_company_id(request.user) is not None

    @admin.action(description="Retry export of selected dead-letter rows", permissions=["retry"])
    def retry_export(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.filter(export_state=ExportState.DEAD).values_list("id", flat=True))
        count = export_retry_dead(model=self.model, ids=ids)
        if count:
            from ingest import outbox

            outbox.kick(export=True)
        self.message_user(request, f"{count} row(s) back to pending export.", messages.SUCCESS)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
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
        if self.model in (Event, SdkEvent):  # analytics rollups: age of the oldest row not yet folded in
            unfolded = import_string(settings.ROLLUP_OLDEST_UNFOLDED)(scoped)
            extra_context["rollup_lag_seconds"] = int((timezone.now() - unfolded).total_seconds()) if unfolded else 0
            extra_context["rollup_oldest_pending"] = unfolded
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(Event)
class EventAdmin(OutboxRowAdmin):
    list_display = ("event", "customer_org_id", "application", "occurred_at", "received_at", "export")
    search_fields = ("=event_id", "=customer_org_id")
    search_help_text = "An event id (UUID), an exact customer org id, or an org id prefix ending with * (org_12*)."

    def search_lookups(self, term: str) -> dict:
        event_id = as_uuid(term)
        if event_id:
            return {"event_id": event_id}  # unique index
        prefix = as_prefix(term)
        if prefix:
            return prefix_lookups("customer_org_id", prefix)  # a range of the (customer_org_id, id) index
        return {"customer_org_id": term}  # (customer_org_id, id) index, read newest first


@admin.register(SdkEvent)
class SdkEventAdmin(OutboxRowAdmin):
    list_display = ("event_name", "platform", "application", "occurred_at", "received_at", "export")
    # No consent filter: "not exported (no analytics consent)" is the export state of exactly those
    # rows, with its own partial index; a filter on the boolean would walk the table for rare ones.
    list_filter = (SdkExportStateFilter, PlatformFilter, "webhook_pending", ReceivedWithin)
    search_fields = ("=event_id",)
    search_help_text = "An SDK event id (UUID)."

    def search_lookups(self, term: str) -> dict | None:
        # The key table holds each stored event's id per application (the SDK dedup, see
        # ingest/models.py) and its row id: its primary key answers, with no index on the events.
        event_id = as_uuid(term)
        if not event_id:
            return None
        keys = SdkEventKey.objects.filter(application_id__in=model_ids(Application), event_id=event_id)
        return {"id__in": list(keys.values_list("row_id", flat=True))}


@admin.register(IdentifyLink)
class IdentifyLinkAdmin(OutboxRowAdmin):
    list_display = ("anon_id", "user_id", "application", "received_at", "export")
    search_fields = ("=link_id", "=user_id")
    search_help_text = "A link id (UUID), an exact user id, or a user id prefix ending with * (user_12*)."

    def search_lookups(self, term: str) -> dict:
        link_id = as_uuid(term)
        if link_id:
            return {"link_id": link_id}  # unique index
        prefix = as_prefix(term)
        if prefix:
            return prefix_lookups("user_id", prefix)  # a range of the (user_id, id) index
        return {"user_id": term}  # (user_id, id) index, read newest first
