"""Webhooks in the back office: endpoints, their messages and every attempt, and the recovery actions.

Scoping comes from `CompanyScopedAdmin`: account admins see and change their company's endpoints,
support reads everything, nobody but the one-time page after create/rotate sees a raw secret.
"""

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from apps_registry.admin_lists import LargeListMixin, as_prefix, prefix_lookups, time_window_filter
from apps_registry.admin_scoping import CompanyScopedAdmin, ObjectPagesMixin, ReadOnlyScopedInline
from apps_registry.webhook_events import WebhookEventType

from . import services, signing
from .models import WebhookAttempt, WebhookEndpoint, WebhookMessage

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups  # a stubs-only alias for what get_fields returns

RECENT_MESSAGES = 20


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2048, assume_scheme="https", label="URL")
    event_types = forms.MultipleChoiceField(
        choices=WebhookEventType.choices, widget=forms.CheckboxSelectMultiple, label="Events to send"
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("company", "application", "url", "event_types", "description", "is_active")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if not url.lower().startswith(("http://", "https://")):
            raise forms.ValidationError("Use an http:// or https:// URL.")
        return url

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data  # ModelForm.clean returns cleaned_data
        company, application = cleaned.get("company"), cleaned.get("application")
        if company and application and application.company_id != company.pk:
            self.add_error("application", "This application belongs to another company.")
        return cleaned


class RecoverForm(forms.Form):
    since = forms.DateTimeField(
        label="Failed since (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text="Every failed message created at or after this time is sent again, with the same webhook-id.",
    )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ObjectPagesMixin, CompanyScopedAdmin):
    company_path = "company"
    form = WebhookEndpointForm
    list_display = ("target", "company", "application", "events", "is_active", "masked_secret", "disabled_reason")
    list_filter = ("is_active", ("company", admin.RelatedOnlyFieldListFilter))
    search_fields = ("url", "description")
    readonly_fields = (
        "masked_secret",
        "rotation",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "created_at",
        "recent_messages",
    )
    actions = ("send_test_action", "reenable_action")

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> "_FieldGroups":
        fields: _FieldGroups = ["company", "application", "url", "event_types", "description", "is_active"]
        if obj is None:
            return fields
        return [*fields, *self.readonly_fields]

    @admin.display(description="URL", ordering="url")
    def target(self, obj: WebhookEndpoint) -> str:
        return str(obj)  # a password saved before credentials were refused is masked

    @admin.display(description="events")
    def events(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types)

    @admin.display(description="signing secret")
    def masked_secret(self, obj: WebhookEndpoint) -> str:
        return signing.secret_mask(obj.secret_hint)

    @admin.display(description="previous secret")
    def rotation(self, obj: WebhookEndpoint) -> str:
        expires = obj.previous_secret_expires_at
        if not expires or expires <= timezone.now():
            return "none (one signature per message)"
        return f"still signs messages until {expires:%Y-%m-%d %H:%M} UTC (two signatures per message)"

    @admin.display(description="messages")
    def recent_messages(self, obj: WebhookEndpoint) -> str:
        rows = obj.messages.order_by("-created_at")[:RECENT_MESSAGES]
        changelist = reverse("admin:webhooks_webhookmessage_changelist") + f"?endpoint__id__exact={obj.pk}"
        table = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:webhooks_webhookmessage_change", args=[quote(m.pk)]),
                    m.pk,
                    m.event_type,
                    m.state,
                    m.attempt_count,
                    f"{m.created_at:%Y-%m-%d %H:%M:%S}",
                )
                for m in rows
            ),
        )
        return format_html(
            "<table><tr><th>id</th><th>type</th><th>state</th><th>attempts</th><th>created</th></tr>{}</table>"
            '<p><a href="{}">All messages and attempts of this endpoint</a></p>',
            table,
            changelist,
        )

    # A new endpoint gets its secret here; the raw value is shown once on the next page.

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if not change:
            # a per-request note for response_add, which shows the raw secret once
            request._new_webhook_secret = services.endpoint_secret_set(endpoint=obj)  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, "_new_webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_once(request, obj, title="Webhook endpoint created", secret=secret)

    # Changelist actions.

    @admin.action(description="Send a test event to the selected endpoints", permissions=["change"])
    def send_test_action(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_send_test(endpoint=endpoint)
        self.message_user(request, f"Queued a test event for {queryset.count()} endpoint(s).")

    @admin.action(description="Re-enable the selected endpoints", permissions=["change"])
    def reenable_action(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        resumed = sum(services.endpoint_reenable(endpoint=e) for e in queryset)
        self.message_user(request, f"Re-enabled {queryset.count()} endpoint(s); {resumed} message(s) resumed.")

    # Per-endpoint actions: a confirmation page (GET) and the action (POST).

    def _endpoint_for_write(self, request: HttpRequest, object_id: str) -> WebhookEndpoint:
        # get_object_for_write is typed for any model; this admin's objects are endpoints
        return cast(WebhookEndpoint, self.get_object_for_write(request, object_id))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/send-test/", view(self.send_test_view), name="webhooks_webhookendpoint_send_test"),
            path(
                "<path:object_id>/rotate-secret/",
                view(self.rotate_secret_view),
                name="webhooks_webhookendpoint_rotate_secret",
            ),
            path("<path:object_id>/reenable/", view(self.reenable_view), name="webhooks_webhookendpoint_reenable"),
            path("<path:object_id>/recover/", view(self.recover_view), name="webhooks_webhookendpoint_recover"),
            *super().get_urls(),
        ]

    def _secret_once(self, request: HttpRequest, obj: WebhookEndpoint, *, title: str, secret: str) -> HttpResponse:
        return self._show_once(request, obj, template="admin/webhooks/secret_once.html", title=title, secret=secret)

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._endpoint_for_write(request, object_id)
        if request.method == "POST":
            message = services.endpoint_send_test(endpoint=obj)
            self.log_change(request, obj, f"Sent test message {message.pk}.")
            note = "" if obj.is_active else " The endpoint is disabled: it will be sent once it is re-enabled."
            self.message_user(request, f"Test message {message.pk} queued.{note}")
            return HttpResponseRedirect(self._change_url(obj))
        return self._confirm(
            request,
            obj,
            title="Send a test event",
            question=f"Send an example {obj.event_types[0] if obj.event_types else ''} message marked "
            '"test": true to this endpoint, signed and retried like any other.',
            button="Send test event",
        )

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._endpoint_for_write(request, object_id)
        if request.method == "POST":
            secret = services.endpoint_rotate_secret(endpoint=obj)
            self.log_change(request, obj, "Rotated the signing secret.")
            return self._secret_once(request, obj, title="New signing secret", secret=secret)
        return self._confirm(
            request,
            obj,
            title="Rotate the signing secret",
            question=f"A new secret is created and shown once. For {services.SECRET_OVERLAP.total_seconds() / 3600:g}"
            " hours every message carries two signatures, one per secret, so the receiver can switch over.",
            button="Rotate secret",
        )

    def reenable_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._endpoint_for_write(request, object_id)
        if request.method == "POST":
            resumed = services.endpoint_reenable(endpoint=obj)
            self.log_change(request, obj, "Re-enabled the endpoint.")
            self.message_user(request, f"Endpoint re-enabled; {resumed} pending message(s) resumed.")
            return HttpResponseRedirect(self._change_url(obj))
        return self._confirm(
            request,
            obj,
            title="Re-enable the endpoint",
            question=f"It was disabled: {obj.disabled_reason or 'by hand'}. Messages waiting for it are sent now.",
            button="Re-enable",
        )

    def recover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._endpoint_for_write(request, object_id)
        form = RecoverForm(request.POST or None, initial={"since": timezone.now() - timedelta(days=1)})
        if request.method == "POST" and form.is_valid():
            since = form.cleaned_data["since"]
            count = services.messages_recover_since(endpoint=obj, since=since)
            self.log_change(request, obj, f"Recovered {count} failed message(s) since {since:%Y-%m-%d %H:%M}.")
            self.message_user(request, f"{count} failed message(s) queued again.")
            return HttpResponseRedirect(self._change_url(obj))
        return self._confirm(
            request,
            obj,
            title="Recover failed deliveries",
            question="Send again every failed message since the time you choose.",
            button="Recover",
            form=form,
        )


class WebhookAttemptInline(ReadOnlyScopedInline):
    model = WebhookAttempt
    fields = ("attempted_at", "status_code", "duration_ms", "response_body", "error")
    readonly_fields = fields
    verbose_name_plural = "attempts (newest first; response bodies truncated to 20 KB)"


class EndpointFilter(admin.SimpleListFilter):
    """The endpoints the user may see, read from the endpoints table.

    Django's related-only filter derives its choices from `SELECT DISTINCT endpoint_id` over the
    messages: every message, on every page of the list (0.4 s at 10 M rows).
    """

    title = "endpoint"
    parameter_name = "endpoint__id__exact"  # the URL of the endpoint page's "all messages" link

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        endpoints = model_admin.admin_site._registry[WebhookEndpoint].get_queryset(request).order_by("pk")
        return [(str(e.pk), str(e)) for e in endpoints]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(endpoint_id=int(value)) if value.isdigit() else queryset.none()


@admin.register(WebhookMessage)
class WebhookMessageAdmin(LargeListMixin, CompanyScopedAdmin):
    """Newest first by id (ids sort by creation time); see apps_registry/admin_lists.py."""

    company_path = "endpoint__company"
    list_display = ("id", "endpoint", "event_type", "state", "attempt_count", "next_attempt_at", "created_at")
    list_filter = (
        "state",
        "event_type",
        EndpointFilter,
        time_window_filter("created_at", title="created", parameter="created"),
    )
    list_select_related = ("endpoint",)
    search_fields = ("=id", "=source")
    search_help_text = (
        "A message id (msg_...) or an exact source (e.g. sdk_event:123); end either with * for a prefix (msg_0a1*)."
    )
    ordering = ("-id",)

    def company_scope(self, company_id: int) -> Q:
        """The company's endpoints by id: the (endpoint, id) index then reads their messages newest
        first, where a join on the endpoint's company would walk every company's messages."""
        endpoints = WebhookEndpoint.objects.filter(company_id=company_id).values_list("pk", flat=True)
        return Q(endpoint_id__in=list(endpoints))

    def search_lookups(self, term: str) -> dict:
        term = term.strip()
        field = "id" if term.startswith("msg_") else "source"  # primary key / source index
        prefix = as_prefix(term)
        return prefix_lookups(field, prefix) if prefix else {field: term}

    inlines = (WebhookAttemptInline,)
    actions = ("resend_action",)
    fields = (
        "id",
        "endpoint",
        "event_type",
        "source",
        "state",
        "attempt_count",
        "next_attempt_at",
        "locked_until",
        "created_at",
        "delivered_at",
        "pretty_payload",
    )
    readonly_fields = fields

    @admin.display(description="payload")
    def pretty_payload(self, obj: WebhookMessage) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages come from events, tests and resends, never from a form

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False  # the delivery log is the record of what was sent

    @admin.action(description="Resend the selected messages (same webhook-id)", permissions=["change"])
    def resend_action(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        for message in queryset:
            services.message_resend(message=message)
        self.message_user(request, f"{queryset.count()} message(s) queued again.")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/resend/", view(self.resend_view), name="webhooks_webhookmessage_resend"),
            *super().get_urls(),
        ]

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        # get_object_for_write is typed for any model; this admin's objects are messages
        obj = cast(WebhookMessage, self.get_object_for_write(request, object_id))
        if request.method != "POST":
            raise PermissionDenied
        services.message_resend(message=obj)
        self.log_change(request, obj, "Resent.")
        self.message_user(request, f"Message {obj.pk} queued again.")
        return HttpResponseRedirect(reverse("admin:webhooks_webhookmessage_change", args=[quote(obj.pk)]))
