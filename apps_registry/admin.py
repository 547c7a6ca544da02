"""The back office: account admins run their company here, support looks things up, superusers do anything.

Scoping lives in `admin_scoping.CompanyScopedAdmin`; this module decides what each page shows.
Raw secrets and keys exist only in the response that created them (a one-time page, never stored
in the session, a message cookie or a log); everywhere else they are masked.
"""

from datetime import timedelta
from typing import cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .admin_scoping import (
    CompanyScopedAdmin,
    ObjectPagesMixin,
    ReadOnlyScopedInline,
    account_company_id,
    is_superuser,
)
from .models import LIMIT_FIELDS, ApiSecret, Application, Company, Membership, Plan, SdkKey, Usage
from .selectors import month_start
from .services import api_secret_revoke, api_secret_rotate, application_create, sdk_key_create, sdk_key_revoke
from .snippets import batch_url, curl_snippet, ingest_url, python_snippet

admin.site.site_header = "SaaSTracker back office"
admin.site.site_title = "SaaSTracker"
admin.site.index_title = "Tenants, credentials and deliveries"


def _this_month_usage():
    return Usage.objects.filter(company=OuterRef("pk"), month=month_start())


class OverageFilter(admin.SimpleListFilter):
    """Companies (or usage rows) whose event count passed the effective monthly limit."""

    title = "overage this month"
    parameter_name = "overage"
    overage_path = "current_overage_at"

    def lookups(self, request, model_admin):
        return (("yes", "Over the limit"), ("no", "Within the limit"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(**{f"{self.overage_path}__isnull": False})
        if self.value() == "no":
            return queryset.filter(**{f"{self.overage_path}__isnull": True})
        return queryset


class UsageOverageFilter(OverageFilter):
    title = "overage"
    overage_path = "overage_at"


# --- Plans and companies ---------------------------------------------------------------------


@admin.register(Plan)
class PlanAdmin(CompanyScopedAdmin):
    company_path = None  # shared by every company: superusers edit, support reads
    list_display = ("tier", "events_per_month", "apps_max", "retention_days", "orgs_max")


class MembershipInline(ReadOnlyScopedInline):
    model = Membership
    fields = ("user", "role")
    readonly_fields = fields


class ApplicationLinkInline(ReadOnlyScopedInline):
    model = Application
    fields = ("name", "uuid", "is_active", "created_at")
    readonly_fields = fields
    show_change_link = True
    verbose_name_plural = "applications"


@admin.register(Company)
class CompanyAdmin(CompanyScopedAdmin):
    company_path = "pk"
    list_display = (
        "name",
        "plan",
        "limit_events_per_month",
        "limit_apps_max",
        "events_this_month",
        "over_limit",
        "is_active",
    )
    list_filter = (OverageFilter, "plan", "is_active")
    # uuid and prefix lookups are cast to text on PostgreSQL, so partial values match too.
    search_fields = ("name", "applications__uuid", "applications__sdk_keys__prefix")
    search_help_text = "Company name, application uuid or SDK key prefix (stk_…)."
    inlines = (ApplicationLinkInline, MembershipInline)
    fieldsets = (
        (None, {"fields": ("name", "plan", "is_active", "created_at")}),
        ("Per-company overrides (empty = the plan's value)", {"fields": tuple(f"{f}_override" for f in LIMIT_FIELDS)}),
        ("Effective limits and usage", {"fields": ("effective_limits", "usage_this_month")}),
    )
    list_select_related = ("plan",)

    def get_queryset(self, request):
        usage = _this_month_usage()
        return (
            super()
            .get_queryset(request)
            .select_related("plan")
            .annotate(
                current_events=Subquery(usage.values("event_count")[:1]),
                current_overage_at=Subquery(usage.values("overage_at")[:1]),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        always = ("created_at", "effective_limits", "usage_this_month")
        if is_superuser(request.user):
            return always
        # Account admins may rename their company, never change what it pays for.
        return (*always, "plan", "is_active", *(f"{f}_override" for f in LIMIT_FIELDS))

    def has_add_permission(self, request) -> bool:
        return is_superuser(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)

    @admin.display(description="events / month", ordering="events_per_month_override")
    def limit_events_per_month(self, obj: Company) -> str:
        return f"{obj.events_per_month:,}"

    @admin.display(description="apps max")
    def limit_apps_max(self, obj: Company) -> int:
        return obj.apps_max

    @admin.display(description="events this month", ordering="current_events")
    def events_this_month(self, obj: Company) -> str:
        return f"{getattr(obj, 'current_events', None) or 0:,}"

    @admin.display(description="over limit", boolean=True, ordering="current_overage_at")
    def over_limit(self, obj: Company) -> bool:
        return getattr(obj, "current_overage_at", None) is not None

    @admin.display(description="effective limits")
    def effective_limits(self, obj: Company) -> str:
        if obj.pk is None:
            return "-"
        rows = (
            (
                name.replace("_", " "),
                f"{obj.effective_limit(name):,}",
                "override" if getattr(obj, f"{name}_override") is not None else "plan",
            )
            for name in LIMIT_FIELDS
        )
        return format_html(
            "<table>{}</table>", format_html_join("", "<tr><td>{}</td><td>{}</td><td>({})</td></tr>", rows)
        )

    @admin.display(description="this month")
    def usage_this_month(self, obj: Company) -> str:
        if obj.pk is None:
            return "-"
        events = getattr(obj, "current_events", None) or 0
        overage_at = getattr(obj, "current_overage_at", None)
        flag = f"over the limit since {overage_at:%Y-%m-%d %H:%M} UTC" if overage_at else "within the limit"
        return f"{events:,} of {obj.events_per_month:,} events ({flag})"


# --- Applications ----------------------------------------------------------------------------


class ApiSecretInline(ReadOnlyScopedInline):
    model = ApiSecret
    fields = ("masked", "created_at", "expires_at", "revoked_at", "state", "revoke")
    readonly_fields = fields
    verbose_name_plural = "API secrets (masked)"

    @admin.display(description="secret")
    def masked(self, obj: ApiSecret) -> str:
        return f"sts_…{obj.hint}"

    @admin.display(description="state")
    def state(self, obj: ApiSecret) -> str:
        return "live" if obj.is_live() else ("revoked" if obj.revoked_at else "expired")

    @admin.display(description="")
    def revoke(self, obj: ApiSecret) -> str:
        if obj.revoked_at is not None:
            return ""
        url = reverse("admin:apps_registry_application_revoke_secret", args=[obj.application_id, obj.pk])
        return format_html('<a href="{}">Revoke…</a>', url)


class SdkKeyInline(ReadOnlyScopedInline):
    model = SdkKey
    fields = ("masked", "created_at", "last_used_at", "revoked_at", "revoke")
    readonly_fields = fields
    verbose_name_plural = "SDK keys (prefix only)"

    @admin.display(description="key")
    def masked(self, obj: SdkKey) -> str:
        return f"{obj.prefix}_…"

    @admin.display(description="")
    def revoke(self, obj: SdkKey) -> str:
        if obj.revoked_at is not None:
            return ""
        url = reverse("admin:apps_registry_application_revoke_sdk_key", args=[obj.application_id, obj.pk])
        return format_html('<a href="{}">Revoke…</a>', url)


class RotateForm(forms.Form):
    expire_old_in_hours = forms.IntegerField(
        min_value=0,
        max_value=24 * 30,
        initial=24,
        label="Current secrets keep working for (hours)",
        help_text="0 ends them now. Clients need this long to switch to the new secret.",
    )


@admin.register(Application)
class ApplicationAdmin(ObjectPagesMixin, CompanyScopedAdmin):
    company_path = "company"
    list_display = ("name", "company", "uuid", "is_active", "live_secrets", "live_sdk_keys", "created_at")
    list_filter = ("is_active", ("company", admin.RelatedOnlyFieldListFilter), "company__plan")
    search_fields = ("name", "uuid", "company__name", "sdk_keys__prefix")
    search_help_text = "Application name or uuid, company name or SDK key prefix (stk_…)."
    autocomplete_fields = ("company",)
    list_select_related = ("company",)
    inlines = (ApiSecretInline, SdkKeyInline)

    def get_queryset(self, request):
        now = timezone.now()
        live = Q(secrets__revoked_at__isnull=True) & (
            Q(secrets__expires_at__isnull=True) | Q(secrets__expires_at__gt=now)
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_secret_count=Count("secrets", filter=live, distinct=True),
                live_key_count=Count("sdk_keys", filter=Q(sdk_keys__revoked_at__isnull=True), distinct=True),
            )
        )

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()  # a new app has no credentials until it is saved

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return ((None, {"fields": ("company", "name", "environments", "is_active")}),)
        return (
            (None, {"fields": ("company", "name", "uuid", "environments", "is_active", "created_at")}),
            ("Sending events", {"fields": ("ingest_endpoint", "batch_endpoint", "signing_snippet")}),
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # An application never moves between companies: its events and credentials belong to one.
        return ("company", "uuid", "created_at", "ingest_endpoint", "batch_endpoint", "signing_snippet")

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        company_id = account_company_id(request.user)
        if company_id is not None and not is_superuser(request.user):
            initial.setdefault("company", company_id)  # type: ignore[arg-type]  # a form's initial takes any value
        return initial

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting an app deletes its events; account admins deactivate it instead.
        return is_superuser(request.user)

    @admin.display(description="live secrets", ordering="live_secret_count")
    def live_secrets(self, obj: Application) -> int:
        return obj.live_secret_count  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="live SDK keys", ordering="live_key_count")
    def live_sdk_keys(self, obj: Application) -> int:
        return obj.live_key_count  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="ingest URL (POST /v1/events)")
    def ingest_endpoint(self, obj: Application) -> str:
        return format_html("<code>{}</code>", ingest_url())

    @admin.display(description="batch URL (SDK, x-api-key)")
    def batch_endpoint(self, obj: Application) -> str:
        return format_html("<code>{}</code>", batch_url())

    @admin.display(description="signing snippet")
    def signing_snippet(self, obj: Application) -> str:
        return format_html(
            "<p>Set <code>API_SECRET</code> to this app's secret (shown once when it was created or rotated).</p>"
            "<p>Shell (curl + openssl):</p><pre>{}</pre><p>Python:</p><pre>{}</pre>",
            curl_snippet(app_uuid=obj.uuid),
            python_snippet(app_uuid=obj.uuid),
        )

    # Creating an app goes through the service so it gets its first secret and key, shown once.

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        new = application_create(company=obj.company, name=obj.name, environments=obj.environments)
        if not obj.is_active:
            new.application.is_active = False
            new.application.save(update_fields=["is_active"])
        obj.pk, obj.uuid, obj.created_at = new.application.pk, new.application.uuid, new.application.created_at
        obj._state.adding, obj._state.db = False, new.application._state.db
        request._new_credentials = new

    def response_add(self, request, obj, post_url_continue=None):
        new = getattr(request, "_new_credentials", None)
        if new is None:
            return super().response_add(request, obj, post_url_continue)
        return self._credentials_once(
            request,
            obj,
            title=f"Application {obj.name!r} created",
            api_secret=new.api_secret,
            sdk_key=new.sdk_key,
        )

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except ValidationError as exc:  # apps_max reached between the form check and the insert
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.path)

    # Credential actions: each is a confirmation page (GET) and the action itself (POST).

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/rotate-secret/",
                view(self.rotate_secret_view),
                name="apps_registry_application_rotate_secret",
            ),
            path(
                "<path:object_id>/new-sdk-key/",
                view(self.new_sdk_key_view),
                name="apps_registry_application_new_sdk_key",
            ),
            path(
                "<path:object_id>/revoke-secret/<int:secret_id>/",
                view(self.revoke_secret_view),
                name="apps_registry_application_revoke_secret",
            ),
            path(
                "<path:object_id>/revoke-sdk-key/<int:key_id>/",
                view(self.revoke_sdk_key_view),
                name="apps_registry_application_revoke_sdk_key",
            ),
            *super().get_urls(),
        ]

    def _credentials_once(self, request, obj, *, title, api_secret=None, sdk_key=None):
        return self._show_once(
            request,
            obj,
            template="admin/apps_registry/credentials_once.html",
            title=title,
            api_secret=api_secret,
            sdk_key=sdk_key,
            ingest_url=ingest_url(),
            batch_url=batch_url(),
            curl=curl_snippet(app_uuid=obj.uuid, secret=api_secret) if api_secret else "",
        )

    def rotate_secret_view(self, request, object_id):
        obj = cast(Application, self.get_object_for_write(request, object_id))
        form = RotateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            hours = form.cleaned_data["expire_old_in_hours"]
            secret = api_secret_rotate(application=obj, expire_old_in=timedelta(hours=hours))
            self.log_change(request, obj, f"Rotated the API secret (old secrets expire in {hours} h).")
            return self._credentials_once(request, obj, title=f"New API secret for {obj.name!r}", api_secret=secret)
        return self._confirm(
            request,
            obj,
            title=f"Rotate the API secret of {obj.name!r}",
            question="A new secret is created and shown once. Live secrets keep working for the time you choose.",
            form=form,
            button="Rotate secret",
        )

    def new_sdk_key_view(self, request, object_id):
        obj = cast(Application, self.get_object_for_write(request, object_id))
        if request.method == "POST":
            key = sdk_key_create(application=obj)
            self.log_change(request, obj, "Created an SDK key.")
            return self._credentials_once(request, obj, title=f"New SDK key for {obj.name!r}", sdk_key=key)
        return self._confirm(
            request,
            obj,
            title=f"New SDK key for {obj.name!r}",
            question="A new x-api-key is created and shown once. Existing keys keep working.",
            button="Create SDK key",
        )

    def revoke_secret_view(self, request, object_id, secret_id):
        obj = cast(Application, self.get_object_for_write(request, object_id))
        secret = obj.secrets.filter(pk=secret_id).first()
        if secret is None:
            raise Http404("No such secret.")
        if request.method == "POST":
            api_secret_revoke(secret=secret)
            self.log_change(request, obj, f"Revoked API secret …{secret.hint}.")
            self.message_user(request, f"API secret …{secret.hint} revoked: it no longer signs requests.")
            return HttpResponseRedirect(self._change_url(obj))
        return self._confirm(
            request,
            obj,
            title=f"Revoke API secret …{secret.hint}",
            question="Requests signed with this secret are refused from now on. This cannot be undone.",
            button="Revoke secret",
        )

    def revoke_sdk_key_view(self, request, object_id, key_id):
        obj = cast(Application, self.get_object_for_write(request, object_id))
        key = obj.sdk_keys.filter(pk=key_id).first()
        if key is None:
            raise Http404("No such SDK key.")
        if request.method == "POST":
            sdk_key_revoke(key=key)
            self.log_change(request, obj, f"Revoked SDK key {key.prefix}.")
            self.message_user(request, f"SDK key {key.prefix}_… revoked.")
            return HttpResponseRedirect(self._change_url(obj))
        return self._confirm(
            request,
            obj,
            title=f"Revoke SDK key {key.prefix}_…",
            question="Requests with this x-api-key are refused from now on. This cannot be undone.",
            button="Revoke key",
        )


# --- Credentials, listed across applications -------------------------------------------------


class CredentialAdmin(CompanyScopedAdmin):
    """Secrets and keys are issued from the application page; here they are listed and revoked."""

    company_path = "application__company"
    list_select_related = ("application__company",)
    list_filter = (("application", admin.RelatedOnlyFieldListFilter),)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)

    def has_revoke_permission(self, request) -> bool:
        return is_superuser(request.user) or self._is_account_admin(request)

    @admin.display(description="company", ordering="application__company__name")
    def company(self, obj) -> str:
        return obj.application.company.name


@admin.register(ApiSecret)
class ApiSecretAdmin(CredentialAdmin):
    list_display = ("masked", "application", "company", "created_at", "expires_at", "revoked_at", "live")
    search_fields = ("application__name", "application__uuid", "application__company__name", "hint")
    fields = ("application", "masked", "created_at", "expires_at", "revoked_at")
    readonly_fields = ("application", "masked", "created_at")
    actions = ("revoke_selected",)

    @admin.display(description="secret")
    def masked(self, obj: ApiSecret) -> str:
        return f"sts_…{obj.hint}"

    @admin.display(description="live", boolean=True)
    def live(self, obj: ApiSecret) -> bool:
        return obj.is_live()

    @admin.action(description="Revoke the selected API secrets", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        count = 0
        for secret in queryset.filter(revoked_at__isnull=True):
            api_secret_revoke(secret=secret)
            count += 1
        self.message_user(request, f"Revoked {count} API secret(s).")


@admin.register(SdkKey)
class SdkKeyAdmin(CredentialAdmin):
    list_display = ("masked", "application", "company", "created_at", "last_used_at", "revoked_at")
    search_fields = ("prefix", "application__name", "application__uuid", "application__company__name")
    search_help_text = "Key prefix (stk_…), application name or uuid, company name."
    fields = ("application", "masked", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("application", "masked", "created_at", "last_used_at")
    actions = ("revoke_selected",)

    @admin.display(description="key", ordering="prefix")
    def masked(self, obj: SdkKey) -> str:
        return f"{obj.prefix}_…"

    @admin.action(description="Revoke the selected SDK keys", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            sdk_key_revoke(key=key)
            count += 1
        self.message_user(request, f"Revoked {count} SDK key(s).")


# --- Usage and people ------------------------------------------------------------------------


@admin.register(Usage)
class UsageAdmin(CompanyScopedAdmin):
    """Counted by the analytics fold as events are folded; nobody edits it by hand but superusers."""

    company_path = "company"
    list_display = ("company", "month", "event_count", "limit", "over_limit", "overage_at", "updated_at")
    list_filter = (UsageOverageFilter, "month", "company__plan")
    search_fields = ("company__name",)
    list_select_related = ("company__plan",)
    date_hierarchy = "month"

    def has_add_permission(self, request) -> bool:
        return is_superuser(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)

    @admin.display(description="events / month limit")
    def limit(self, obj: Usage) -> str:
        return f"{obj.company.events_per_month:,}"

    @admin.display(description="over limit", boolean=True, ordering="overage_at")
    def over_limit(self, obj: Usage) -> bool:
        return obj.is_over


@admin.register(Membership)
class MembershipAdmin(CompanyScopedAdmin):
    """Who administers which company. Granting a role is a superuser decision."""

    company_path = "company"
    list_display = ("user", "company", "role")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email", "company__name")
    autocomplete_fields = ("company",)

    def has_add_permission(self, request) -> bool:
        return is_superuser(request.user)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user)
