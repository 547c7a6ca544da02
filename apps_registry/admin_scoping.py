"""Who sees and who changes what in the admin, in one place, used by every app's ModelAdmin.

A user's roles add up to two scopes, computed once per request by `admin_role`:

- read: superusers and support staff (group `Support`) read every company; an account admin
  (staff with an owner/admin membership) reads their own company.
- write: superusers write everything; an account admin writes inside their own company; support
  writes nothing. Being support as well never widens what an account admin may change, and being
  an account admin as well never lets support change another company.

`CompanyScopedAdmin` applies them everywhere a ModelAdmin reads or writes: the queryset (lists,
search, pages, edited URLs), every list filter's choices (`get_list_filter` makes relation
filters list only related objects of visible rows, and a filter value is always applied, so a
foreign id gives an empty list, never a wider one), every foreign-key choice list and
autocomplete used by a form (writable objects only), object permissions, saves and deletes, every
changelist action (refused when a selected row is not writable) and the custom per-object views
(`get_object_for_write`). A new admin model gets all of it by subclassing and setting
`company_path`; tests/apps_registry/test_admin_isolation.py walks every registered admin to check it.

Django's model permissions are deliberately not consulted: the role decides, so an account admin
needs no per-model permission rows and cannot be given a wider view by a stray one.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import get_fields_from_path, quote, unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q, QuerySet
from django.db.models.options import Options
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from .models import Membership

SUPPORT_GROUP = "Support"
_NOTHING = Q(pk__in=[])


@dataclass(frozen=True)
class AdminRole:
    """What one user may do in the back office, whatever mix of roles they have."""

    superuser: bool = False
    support: bool = False
    company_id: int | None = None  # the company they are owner/admin of: the only one they may write

    @property
    def reads_everything(self) -> bool:
        return self.superuser or self.support


def admin_role(user: Any) -> AdminRole:
    """The user's role, cached on the user object (one request)."""
    cached = getattr(user, "_admin_role", None)
    if cached is not None:
        return cached
    if not (user.is_active and user.is_staff):
        role = AdminRole(superuser=bool(user.is_active and user.is_superuser))
    else:
        company_id = None
        try:
            membership = user.membership
        except Membership.DoesNotExist:
            membership = None
        if membership is not None and membership.role in (Membership.Role.OWNER, Membership.Role.ADMIN):
            company_id = membership.company_id
        role = AdminRole(
            superuser=user.is_superuser,
            support=user.groups.filter(name=SUPPORT_GROUP).exists(),
            company_id=company_id,
        )
    user._admin_role = role
    return role


def is_support(user: Any) -> bool:
    return admin_role(user).support


def account_company_id(user: Any) -> int | None:
    """The company an account admin manages (the only one they may change), or None."""
    return admin_role(user).company_id


def is_superuser(user: Any) -> bool:
    return admin_role(user).superuser


def _applied_when_used(spec_class: type) -> type:
    """A list filter that is applied whenever its parameter is in the URL.

    Django drops a filter that has fewer than two choices from the sidebar *and* from the query
    while still consuming its parameter, so `?application__id__exact=<foreign id>` used to list
    every visible row instead of none (and "select all" then acted on them).
    """

    def has_output(self: Any) -> bool:
        # mypy cannot follow a class made by type() into super().
        return bool(self.used_parameters) or super(cls, self).has_output()  # type: ignore[arg-type]

    cls = type(f"AppliedWhenUsed{spec_class.__name__}", (spec_class,), {"has_output": has_output})
    return cls


class ScopedRelatedFieldListFilter(admin.RelatedOnlyFieldListFilter):
    """Choices are the related objects of rows the user may see, never every row of the related table."""

    def has_output(self) -> bool:
        return bool(self.used_parameters) or super().has_output()


def _applied_filter_factory(create: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `FieldListFilter.create` (a plain field name in list_filter) the same way."""

    @wraps(create)
    def make(*args: Any, **kwargs: Any) -> Any:
        spec = create(*args, **kwargs)
        if spec.used_parameters and not spec.has_output():
            spec.has_output = lambda: True
        return spec

    return make


class CompanyScopedAdmin(admin.ModelAdmin):
    """Set `company_path` to the lookup from this model to its Company id (e.g. "application__company").

    `company_path = "pk"` is the Company itself; `company_path = None` marks data that belongs to no
    company (plans): superusers write it, support reads it, account admins never see it.

    Subclasses may narrow permissions further (e.g. superuser-only deletes) but never need to
    widen them: objects outside the write scope are refused by the base whatever a subclass says.
    """

    company_path: str | None = "company"

    # --- Scopes -------------------------------------------------------------------------------

    def company_scope(self, company_id: int) -> Q:
        """The rows of one company."""
        return Q(**{"pk" if self.company_path == "pk" else f"{self.company_path}_id": company_id})

    def read_scope(self, request: HttpRequest) -> Q | None:
        """A filter for the rows the user may see; None means every row."""
        role = admin_role(request.user)
        if role.reads_everything:
            return None
        if role.company_id is None or self.company_path is None:
            return _NOTHING
        return self.company_scope(role.company_id)

    def write_scope(self, request: HttpRequest) -> Q | None:
        """A filter for the rows the user may change; None means every row."""
        role = admin_role(request.user)
        if role.superuser:
            return None
        if role.company_id is None or self.company_path is None:
            return _NOTHING
        return self.company_scope(role.company_id)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        scope = self.read_scope(request)
        return qs if scope is None else qs.filter(scope)

    def writable(self, request: HttpRequest, queryset: QuerySet | None = None) -> QuerySet:
        """`queryset` (default: every row of the model) narrowed to what the user may change."""
        qs = self.model._default_manager.all() if queryset is None else queryset
        scope = self.write_scope(request)
        return qs if scope is None else qs.filter(scope)

    def object_company_id(self, obj: models.Model) -> int | None:
        """The company an object (saved or not) belongs to, following `company_path`."""
        if self.company_path is None:
            return None
        if self.company_path == "pk":
            return obj.pk
        *hops, last = self.company_path.split("__")
        node: Any = obj
        for hop in hops:
            node = getattr(node, hop, None)
            if node is None:
                return None
        return getattr(node, f"{last}_id", None)

    def may_write_object(self, request: HttpRequest, obj: models.Model) -> bool:
        role = admin_role(request.user)
        if role.superuser:
            return True
        return (
            self.company_path is not None
            and role.company_id is not None
            and self.object_company_id(obj) == role.company_id
        )

    def _is_account_admin(self, request: HttpRequest) -> bool:
        """May write somewhere in this model (their own company's rows)."""
        return self.company_path is not None and account_company_id(request.user) is not None

    def _may_write(self, request: HttpRequest, obj: models.Model | None) -> bool:
        if is_superuser(request.user):
            return True
        if obj is None:
            return self._is_account_admin(request)
        return self.may_write_object(request, obj)

    # --- Permissions --------------------------------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        role = admin_role(request.user)
        return role.reads_everything or self._is_account_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._may_write(request, None)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._may_write(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._may_write(request, obj)

    # --- Writes: refused outside the write scope, whatever a subclass's permissions say ---------

    def _ensure_writable(self, request: HttpRequest, obj: models.Model) -> None:
        if not self.may_write_object(request, obj):
            raise PermissionDenied

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        obj = super().save_form(request, form, change)
        self._ensure_writable(request, obj)
        return obj

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        self._ensure_writable(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self.writable(request, queryset).count() != queryset.count():
            raise PermissionDenied
        super().delete_queryset(request, queryset)

    def get_object_for_write(self, request: HttpRequest, object_id: str) -> models.Model:
        """For custom per-object views: 404 when the user may not see it, 403 when they may not change it."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No such {self.opts.verbose_name}.")
        if not self.has_change_permission(request, obj) or not self.may_write_object(request, obj):
            raise PermissionDenied
        return obj

    def get_actions(self, request: HttpRequest) -> dict:
        """Every action that is not declared `permissions=["view"]` only runs on writable rows.

        A selection holding a row the user may not change (a support user who is also an account
        admin, "select all" across companies) is refused as a whole: acting on part of what was
        selected would be a surprise too.
        """
        actions: dict[str, Any] = super().get_actions(request)  # the stubs allow None values; Django never has one
        return {
            name: (
                func if tuple(getattr(func, "allowed_permissions", ())) == ("view",) else self._guard(func),
                name,
                desc,
            )
            for name, (func, name, desc) in actions.items()
        }

    def _guard(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(func)
        def guarded(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> Any:
            foreign = queryset.count() - self.writable(request, queryset).count()
            if foreign:
                self.message_user(
                    request,
                    f"{foreign} of the selected rows belong to a company you cannot change; nothing was done.",
                    messages.ERROR,
                )
                return None
            return func(modeladmin, request, queryset)

        return guarded

    # --- Choices: filters, foreign keys, autocomplete ------------------------------------------

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        """Relation filters list only objects related to visible rows; every filter applies when used."""
        scoped: list[Any] = []
        declared: Sequence[Any] = super().get_list_filter(request)
        for item in declared:
            if isinstance(item, (tuple, list)):
                path, spec_class = item
                if issubclass(spec_class, admin.RelatedFieldListFilter):
                    spec_class = ScopedRelatedFieldListFilter
                scoped.append((path, _applied_when_used(spec_class)))
            elif isinstance(item, str):
                field = get_fields_from_path(self.model, item)[-1]
                if field.is_relation:
                    scoped.append((item, ScopedRelatedFieldListFilter))
                else:
                    scoped.append((item, _applied_filter_factory(admin.FieldListFilter.create)))
            else:  # a SimpleListFilter class
                scoped.append(_applied_when_used(item))
        return scoped

    def _related_write_scope(self, request: HttpRequest, related_model: type[models.Model]) -> Q | None:
        """How a form may point at `related_model`: its admin's write scope, or anything for superusers."""
        related_admin = self.admin_site._registry.get(related_model)
        if is_superuser(request.user):
            return None
        if isinstance(related_admin, CompanyScopedAdmin):
            return related_admin.write_scope(request)
        return None  # not a company's data (e.g. users): the field's own limits apply

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """A form can only point at objects the user may change (their own company and its apps)."""
        scope = self._related_write_scope(request, db_field.related_model)
        if scope is not None and "queryset" not in kwargs:
            kwargs["queryset"] = db_field.related_model._default_manager.filter(scope)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        scope = self._related_write_scope(request, db_field.related_model)
        if scope is not None and "queryset" not in kwargs:
            kwargs["queryset"] = db_field.related_model._default_manager.filter(scope)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """An autocomplete fills a form field, so it offers only objects the user may change."""
        qs, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "autocomplete":
            qs = self.writable(request, qs)
        return qs, may_have_duplicates


class ReadOnlyScopedInline(admin.TabularInline):
    """An inline shown to whoever may view the parent; rows are changed through actions, never the form.

    The parent's scoped object already limits which rows appear (they hang off that object).
    """

    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        role = admin_role(request.user)
        return role.reads_everything or role.company_id is not None

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


class ObjectPagesMixin:
    """The pages behind per-object admin buttons: a confirmation form and a show-once page."""

    admin_site: admin.AdminSite  # provided by the ModelAdmin this is mixed into
    opts: Options

    def _change_url(self, obj: models.Model) -> str:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[quote(obj.pk)])

    def _object_context(self, request: HttpRequest, obj: models.Model, *, title: str, **extra: Any) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "original": obj,
            "change_url": self._change_url(obj),
            **extra,
        }

    def _confirm(
        self,
        request: HttpRequest,
        obj: models.Model,
        *,
        title: str,
        question: str,
        button: str = "Confirm",
        form: Any = None,
    ) -> HttpResponse:
        context = self._object_context(request, obj, title=title, question=question, button=button, form=form)
        return TemplateResponse(request, "admin/confirm_action.html", context)

    def _show_once(self, request: HttpRequest, obj: models.Model, *, template: str, title: str, **extra: Any) -> Any:
        """Render a page holding a new secret; it is never cached and the secret is kept nowhere."""
        response = TemplateResponse(request, template, self._object_context(request, obj, title=title, **extra))
        response["Cache-Control"] = "no-store"
        return response
