"""Tenant isolation in the back office, for every registered admin model and every mix of roles.

Nothing here names a model: the tests iterate `admin.site._registry`, build a row of every
company-scoped model in two companies (Acme, whose roles the user holds, and Zorblax, a stranger)
with the factories, and drive the real admin pages, filters, autocompletes, forms, custom views and
actions as each user. A model added later is covered as soon as it is registered (it must have a
factory in tests/factories.py, which another test already demands).

Roles: staff without a role, a member, an admin and an owner of Acme, each with and without the
`Support` group, and a superuser. Whatever the mix: only owners/admins write, only inside Acme;
support reads everything and writes nothing; nobody but support and superusers sees Zorblax.
"""

import itertools
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path, quote
from django.contrib.auth.models import Group
from django.db import models
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse

from apps_registry.admin_scoping import SUPPORT_GROUP, CompanyScopedAdmin
from apps_registry.models import Company, Plan
from tests import factories
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory, UserFactory, WebhookEndpointFactory

MARK = "zorblax"  # in the stranger company's names and URLs; must never reach a page it may not read
STANDARD_VIEWS = {"changelist", "add", "history", "delete", "change"}

# role name -> (in the Support group, membership role in Acme)
ROLES = {
    "staff": (False, None),
    "member": (False, "member"),
    "admin": (False, "admin"),
    "owner": (False, "owner"),
    "support": (True, None),
    "support+member": (True, "member"),
    "support+admin": (True, "admin"),
    "support+owner": (True, "owner"),
    "superuser": (False, None),
}


def scoped_admins() -> list[tuple[type[models.Model], CompanyScopedAdmin]]:
    return [(m, a) for m, a in admin.site._registry.items() if isinstance(a, CompanyScopedAdmin)]


def _writes_acme(role: str) -> bool:
    return role == "superuser" or ROLES[role][1] in ("admin", "owner")


def _reads_everything(role: str) -> bool:
    return role == "superuser" or ROLES[role][0]


# --- The world: every scoped model, in both companies ----------------------------------------


class World:
    def __init__(self) -> None:
        plan = Plan.objects.get(tier=Plan.Tier.STARTER)
        self.acme = CompanyFactory(name="Acme Analytics", plan=plan)
        self.stranger = CompanyFactory(name="Zorblax Widgets", plan=plan)
        self.rows: dict[tuple[type[models.Model], int], models.Model] = {}
        for company, word in ((self.acme, "acme"), (self.stranger, MARK)):
            app = ApplicationFactory(company=company, name=f"{word.title()} Mobile")
            self.rows[(type(app), company.pk)] = app
            endpoint = WebhookEndpointFactory(company=company, application=app, url=f"https://hooks.{word}.example/in")
            self.rows[(type(endpoint), company.pk)] = endpoint
            for model, model_admin in scoped_admins():
                if model_admin.company_path is not None:
                    self.row(model, company)

    def row(self, model: type[models.Model], company: Company) -> models.Model:
        """A row of `model` in `company`, made by its factory with every company-owned parent in that company."""
        if model is Company:
            return company
        key = (model, company.pk)
        if key not in self.rows:
            kwargs = {}
            for field in model._meta.concrete_fields:
                related_admin = admin.site._registry.get(field.related_model) if field.is_relation else None
                if isinstance(related_admin, CompanyScopedAdmin) and related_admin.company_path is not None:
                    kwargs[field.name] = self.row(field.related_model, company)
            self.rows[key] = getattr(factories, f"{model.__name__}Factory")(**kwargs)
        return self.rows[key]

    def stranger_rows(self) -> list[tuple[type[models.Model], CompanyScopedAdmin, models.Model]]:
        """One Zorblax row per scoped model, and a plan (data of no company, which only superusers change)."""
        out = []
        for model, model_admin in scoped_admins():
            obj = Plan.objects.first() if model is Plan else self.row(model, self.stranger)
            out.append((model, model_admin, obj))
        return out

    def snapshot(self) -> dict[str, list[str]]:
        """Every stored value of every Zorblax row (and of every plan), to prove a request changed none."""
        state = {}
        for model, model_admin in scoped_admins():
            qs = model._default_manager.all()
            if model_admin.company_path is not None:
                qs = qs.filter(model_admin.company_scope(self.stranger.pk))
            state[model._meta.label] = sorted(repr(sorted(v.items())) for v in qs.values())
        return state

    def changed_since(self, before: dict[str, list[str]]) -> list[str]:
        """The models whose Zorblax rows differ from `before`."""
        after = self.snapshot()
        return [label for label in after if after[label] != before.get(label)]


@pytest.fixture
def world(db) -> World:
    return World()


def _user(role: str, world: World) -> Any:
    user = UserFactory(username=f"u-{role}", is_superuser=role == "superuser")
    support, membership = ROLES[role]
    if support:
        user.groups.add(Group.objects.get_or_create(name=SUPPORT_GROUP)[0])
    if membership:
        MembershipFactory(user=user, company=world.acme, role=membership)
    return user


@pytest.fixture(params=list(ROLES))
def as_role(request, world) -> tuple[str, Any, Client]:
    role = request.param
    user = _user(role, world)
    client = Client()
    client.force_login(user)
    return role, user, client


def _url(model: type[models.Model], view: str, *args: Any) -> str:
    """Primary keys quoted as the admin quotes them (a message id like msg_40… would otherwise decode to msg@…)."""
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=[quote(a) for a in args])


def _request_as(user: Any) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


# --- A browser's view of a form ---------------------------------------------------------------


class _FormFields(HTMLParser):
    """The fields a browser would submit from the page's main form (name -> list of values)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self.kinds: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value", "on" if a.get("type") == "checkbox" else ""))
            dated = any(c in a.get("class", "") for c in ("vDateField", "vTimeField"))
            self.kinds[name] = "date" if dated else a.get("type", "text")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, [])
            self.kinds[name] = "select"
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select].append(a.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = [""]
            self.kinds[name] = "textarea"

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea][0] += data


def _edited_form(page: str) -> tuple[dict[str, list[str]], bool]:
    """The page's form with every free-text value changed, and whether anything could be changed."""
    parser = _FormFields()
    parser.feed(page)
    data, changed = parser.data, False
    for name, kind in parser.kinds.items():
        values = data[name]
        if not values or ("-" in name and name.split("-")[-1] in ("TOTAL_FORMS", "INITIAL_FORMS")):
            continue
        if name.endswith(("_0", "_1")) or name in ("csrfmiddlewaretoken", "action", "select_across", "index"):
            continue
        if kind in ("text", "textarea") and values[0]:
            data[name], changed = [values[0] + " edited"], True
        elif kind == "url" and values[0]:
            data[name], changed = [values[0].rstrip("/") + "/edited"], True
        elif kind == "number" and values[0]:
            data[name], changed = [str(Decimal(values[0]) + 1)], True  # ints, and decimals (FX rates)
    return data, changed


# --- Pages, forms and custom views of another company -----------------------------------------


def test_every_registered_admin_is_company_scoped(world, as_role):
    """A model registered with a plain ModelAdmin would escape every rule here; Django's own and django-axes'
    lockout records (login throttling, issue 18) are superuser-only."""
    role, _user, client = as_role
    for model, model_admin in admin.site._registry.items():
        if isinstance(model_admin, CompanyScopedAdmin):
            continue
        assert model._meta.app_label in ("auth", "axes"), f"{model._meta.label} must use CompanyScopedAdmin"
        expected = 200 if role == "superuser" else 403
        assert client.get(_url(model, "changelist")).status_code == expected, (role, model)


def test_pages_of_another_company_are_hidden_or_read_only(world, as_role):
    role, _user, client = as_role
    root = Client()
    root.force_login(UserFactory(username="root-control", is_superuser=True))
    untouched = world.snapshot()
    for model, _model_admin, obj in world.stranger_rows():
        readable = _reads_everything(role)
        label = (role, model._meta.label)

        listing = client.get(_url(model, "changelist"))
        if not _reads_everything(role):
            assert MARK not in listing.content.decode().lower(), label
        for view in ("change", "history"):
            response = client.get(_url(model, view, obj.pk))
            assert response.status_code in ((200,) if readable else (302, 403)), (*label, view)
            page = response.content.decode()
            if not readable:
                assert MARK not in page.lower(), (*label, view)
            if view == "change" and readable and role != "superuser":
                assert 'name="_save"' not in page, label  # a read-only page

        # The change form as a superuser would submit it, with every free-text field edited.
        data, edited = _edited_form(root.get(_url(model, "change", obj.pk)).content.decode())
        before = world.snapshot() if role == "superuser" else untouched
        response = client.post(_url(model, "change", obj.pk), data)
        if role == "superuser":
            if edited:
                assert response.status_code == 302, (label, response.content.decode()[:3000])
                assert model._meta.label in world.changed_since(before), label  # the control: this form writes
            continue
        assert response.status_code in (302, 403), label
        client.post(_url(model, "delete", obj.pk), {"post": "yes"})
    if role != "superuser":
        assert world.changed_since(untouched) == [], role


def _custom_views(model_admin: CompanyScopedAdmin) -> list[Any]:
    prefix = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}_"
    return [
        p
        for p in model_admin.get_urls()
        if getattr(p, "name", None) and p.name.startswith(prefix) and p.name.removeprefix(prefix) not in STANDARD_VIEWS
    ]


def test_custom_views_never_act_on_another_company(world, as_role):
    """Rotate, revoke, new key, send test, re-enable, recover, resend...: GET and POST, any parameters."""
    role, _user, client = as_role
    if role == "superuser":
        pytest.skip("superusers act on every company by design")
    form = {"expire_old_in_hours": "0", "since": "2000-01-01T00:00"}
    seen, untouched = 0, world.snapshot()
    for model, model_admin, obj in world.stranger_rows():
        children = [
            child.pk
            for rel in model._meta.related_objects
            for child in rel.related_model._default_manager.filter(**{rel.field.name: obj})
        ]
        for pattern in _custom_views(model_admin):
            extra = [k for k in pattern.pattern.converters if k != "object_id"]
            for values in itertools.product(children, repeat=len(extra)) if extra else [()]:
                try:
                    kwargs = {"object_id": quote(obj.pk), **dict(zip(extra, values, strict=True))}
                    target = reverse(f"admin:{pattern.name}", kwargs=kwargs)
                except NoReverseMatch:  # a child whose id is not an int cannot fill an <int:...> slot
                    continue
                get, post = client.get(target), client.post(target, form)
                seen += 1
                assert get.status_code in (403, 404), (role, target)
                assert post.status_code in (403, 404), (role, target)
    assert seen
    assert world.changed_since(untouched) == [], role


def test_actions_never_touch_another_company(world, as_role):
    """Every changelist action, on a selected foreign row and on "select all", leaves Zorblax as it was."""
    role, user, client = as_role
    if role == "superuser":
        pytest.skip("superusers act on every company by design")
    untouched, ran = world.snapshot(), []
    for model, model_admin, obj in world.stranger_rows():
        for name in model_admin.get_actions(_request_as(user)):
            for extra in ({"_selected_action": [obj.pk]}, {"_selected_action": [obj.pk], "select_across": "1"}):
                client.post(_url(model, "changelist"), {"action": name, "index": "0", "post": "yes", **extra})
                ran.append(f"{model._meta.label}.{name}")
    assert world.changed_since(untouched) == [], (role, ran)


# --- Choices: list filters, autocompletes, form fields ----------------------------------------


def test_filters_list_only_objects_of_visible_rows(world, as_role):
    role, user, client = as_role
    for model, model_admin in scoped_admins():
        response = client.get(_url(model, "changelist"))
        if response.status_code != 200:
            continue
        page = response.content.decode().lower()
        if not _reads_everything(role):
            assert MARK not in page, (role, model._meta.label)
        visible = model_admin.get_queryset(_request_as(user))
        for spec in response.context["cl"].filter_specs:
            path = getattr(spec, "field_path", None)
            choices = getattr(spec, "lookup_choices", None)
            if path is None or choices is None:
                continue
            if isinstance(spec, admin.RelatedFieldListFilter):
                shown = {pk for pk, _label in choices}
                allowed = set(visible.values_list(f"{path}__pk", flat=True))
            else:
                shown = {value for value in choices if value is not None}
                allowed = set(visible.values_list(path, flat=True))
            assert shown <= allowed, (role, model._meta.label, path, shown - allowed)


def test_autocompletes_and_form_choices_offer_only_writable_objects(world, as_role):
    role, user, client = as_role
    request = _request_as(user)
    for model, model_admin in scoped_admins():
        for field_name in model_admin.get_autocomplete_fields(request):
            related = model._meta.get_field(field_name).related_model
            response = client.get(
                reverse("admin:autocomplete"),
                {"app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field_name},
            )
            if response.status_code != 200:
                assert role != "superuser"
                continue
            offered = {int(r["id"]) for r in response.json()["results"]}
            writable = set(admin.site._registry[related].writable(request).values_list("pk", flat=True))
            assert offered <= writable, (role, model._meta.label, field_name)
        response = client.get(_url(model, "add"))
        if response.status_code != 200:
            continue
        assert MARK not in response.content.decode().lower() or role == "superuser", (role, model._meta.label)
        for name, field in response.context["adminform"].form.fields.items():
            related_admin = admin.site._registry.get(getattr(getattr(field, "queryset", None), "model", None))
            if role != "superuser" and isinstance(related_admin, CompanyScopedAdmin):
                offered = set(field.queryset.values_list("pk", flat=True))
                writable = set(related_admin.writable(request).values_list("pk", flat=True))
                assert offered <= writable, (role, model._meta.label, name)


def test_a_filter_for_a_foreign_object_lists_nothing(world, as_role):
    """`?application__id__exact=<Zorblax's app>` must give an empty list, not the user's own rows."""
    role, _user, client = as_role
    if _reads_everything(role):
        pytest.skip("support and superusers may read the foreign object")
    checked = 0
    for model, model_admin in scoped_admins():
        for item in model_admin.list_filter:
            path = item[0] if isinstance(item, (tuple, list)) else item
            if not isinstance(path, str):
                continue
            field = get_fields_from_path(model, path)[-1]
            related_admin = admin.site._registry.get(field.related_model) if field.is_relation else None
            if not isinstance(related_admin, CompanyScopedAdmin) or related_admin.company_path is None:
                continue
            foreign = world.row(field.related_model, world.stranger)
            response = client.get(_url(model, "changelist"), {f"{path}__{field.target_field.name}__exact": foreign.pk})
            if response.status_code != 200:
                assert not _writes_acme(role)
                continue
            assert response.context["cl"].result_count == 0, (role, model._meta.label, path)
            checked += 1
    assert checked or not _writes_acme(role)
