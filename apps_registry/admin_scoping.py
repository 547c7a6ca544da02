"""Who sees what in the admin, in one place, used by every app's ModelAdmin.

- Superusers: everything.
- Support staff (group `Support`): every company, read-only.
- Account admins (staff with an owner/admin membership): their own company only, read-write.
Everything else, including autocomplete and edited URLs, goes through `get_queryset`, so a
scoped queryset is the one rule that keeps companies apart.

Django's model permissions are deliberately not consulted: the role decides, so an account admin
needs no per-model permission rows and cannot be given a wider view by a stray one.
"""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import reverse

from .models import Membership

SUPPORT_GROUP = "Support"


def is_support(user) -> bool:
    if not (user.is_active and user.is_staff):
        return False
    cached = getattr(user, "_is_support", None)
    if cached is None:
        cached = user._is_support = user.groups.filter(name=SUPPORT_GROUP).exists()
    return cached


def account_company_id(user) -> int | None:
    """The company an account admin manages, or None."""
    if not (user.is_active and user.is_staff):
        return None
    try:
        membership = user.membership
    except Membership.DoesNotExist:
        return None
    if membership.role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        return None
    return membership.company_id


def is_superuser(user) -> bool:
    return user.is_active and user.is_superuser


class CompanyScopedAdmin(admin.ModelAdmin):
    """Set `company_path` to the lookup from this model to its Company id (e.g. "application__company").

    `company_path = "pk"` is the Company itself; `company_path = None` marks data that belongs to no
    company (plans): superusers write it, support reads it, account admins never see it.
    """

    company_path: str | None = "company"

    def _scope_filter(self, company_id: int) -> dict:
        return {"pk" if self.company_path == "pk" else f"{self.company_path}_id": company_id}

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        user = request.user
        if is_superuser(user) or is_support(user):
            return qs
        company_id = account_company_id(user)
        if company_id is None or self.company_path is None:
            return qs.none()
        return qs.filter(**self._scope_filter(company_id))

    def _is_account_admin(self, request) -> bool:
        return self.company_path is not None and account_company_id(request.user) is not None

    def has_module_permission(self, request) -> bool:
        user = request.user
        return is_superuser(user) or is_support(user) or self._is_account_admin(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request) -> bool:
        return is_superuser(request.user) or self._is_account_admin(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user) or self._is_account_admin(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_superuser(request.user) or self._is_account_admin(request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Account admins can only pick their own company and its applications."""
        company_id = None if is_superuser(request.user) else account_company_id(request.user)
        if company_id is not None:
            model_name = db_field.related_model._meta.model_name
            if model_name == "company":
                kwargs["queryset"] = db_field.related_model.objects.filter(pk=company_id)
            elif model_name == "application":
                kwargs["queryset"] = db_field.related_model.objects.filter(company_id=company_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyScopedInline(admin.TabularInline):
    """An inline shown to whoever may view the parent; rows are changed through actions, never the form.

    The parent's scoped object already limits which rows appear (they hang off that object).
    """

    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None) -> bool:
        user = request.user
        return is_superuser(user) or is_support(user) or account_company_id(user) is not None

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ObjectPagesMixin:
    """The pages behind per-object admin buttons: a confirmation form and a show-once page."""

    def _change_url(self, obj) -> str:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])

    def _object_context(self, request, obj, *, title: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "original": obj,
            "change_url": self._change_url(obj),
            **extra,
        }

    def _confirm(self, request, obj, *, title, question, button="Confirm", form=None):
        context = self._object_context(request, obj, title=title, question=question, button=button, form=form)
        return TemplateResponse(request, "admin/confirm_action.html", context)

    def _show_once(self, request, obj, *, template: str, title: str, **extra):
        """Render a page holding a new secret; it is never cached and the secret is kept nowhere."""
        response = TemplateResponse(request, template, self._object_context(request, obj, title=title, **extra))
        response["Cache-Control"] = "no-store"
        return response
