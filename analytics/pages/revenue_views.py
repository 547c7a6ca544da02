"""The revenue pages: Revenue, Revenue × Health, Signals, Settings → Organization data.

Thin like the others: read the URL, call the selectors the API uses, render. Imports (upload, preview
with the dry-run report, confirm) are for owners and admins of the company; the rest for any member.
"""

from __future__ import annotations

import re
import secrets
from datetime import date

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps_registry.models import Application
from ingest.errors import ApiError
from revenue import imports
from revenue import selectors as revenue
from revenue.models import Import
from revenue.services import (
    import_report,
    import_run,
    is_company_admin,
    note_create,
    note_delete,
    reporting_currency,
    tag_add,
    tag_remove,
)

from ..revenue_health import SEGMENTS, mrr_trend_get, revenue_get, revenue_health_get
from ..signals import signals_list
from .filters import PageFilters
from .views import PageError, _render, app_page

UPLOAD_TTL_SECONDS = 30 * 60
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
SEGMENT_LABELS = {
    "champions": ("Champions", "Good health, high MRR: keep them happy."),
    "expansion": ("Expansion", "Good health, lower MRR: room to grow."),
    "revenue_at_risk": ("Revenue at risk", "Low health, high MRR: act first."),
    "low_value": ("Low value", "Low health, lower MRR."),
}


def _guard(load):  # type: ignore[no-untyped-def]
    """Turn a database failure or timeout into the page's error state."""
    from django.db import DatabaseError

    def wrapped() -> dict:
        try:
            return load()
        except DatabaseError as exc:
            raise PageError("The figures could not be read just now. Try again in a moment.") from exc

    return wrapped


@require_GET
@app_page
def revenue_page(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    months: str = request.GET.get("months") or "12"
    months = months if months in {"12", "24", "36"} else "12"
    month = None
    match = _MONTH.match(request.GET.get("month") or "")
    if match and 1 <= int(str(match.group(2))) <= 12:
        month = date(int(str(match.group(1))), int(str(match.group(2))), 1)

    @_guard
    def load() -> dict:
        if not revenue.has_revenue_data(app=app):
            return {"no_revenue": True}
        try:
            body = revenue_get(app=app, month=month)
        except ValueError as exc:  # a month in the future
            raise PageError("Pick a month that is not in the future.") from exc
        trend = mrr_trend_get(app=app, months=int(months))
        chart = {
            "kind": "line",
            "labels": [m["month"] for m in trend["months"]],
            "datasets": [{"label": f"MRR ({body['currency']})", "data": [float(m["mrr"]) for m in trend["months"]]}],
        }
        return {"revenue": body, "trend": trend, "chart": chart}

    extra = {"months": months, "month_links": [(m, filters.querystring(months=m)) for m in ("12", "24", "36")]}
    return _render(request, "analytics/pages/revenue.html", app, filters, "revenue", load, extra)


@require_GET
@app_page
def revenue_health_page(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    @_guard
    def load() -> dict:
        if not revenue.has_revenue_data(app=app):
            return {"no_revenue": True}
        body = revenue_health_get(app=app)
        base = reverse("pages:organizations", args=[app.uuid])
        cells = [
            {
                "key": key,
                "label": SEGMENT_LABELS[key][0],
                "hint": SEGMENT_LABELS[key][1],
                "url": base + filters.querystring(segment=key, sort="-mrr"),
                **body["cells"][key],
            }
            for key in SEGMENTS
        ]
        return {"matrix": body, "cells": cells}

    return _render(request, "analytics/pages/revenue_health.html", app, filters, "revenue_health", load)


@require_GET
@app_page
def signals_page(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    @_guard
    def load() -> dict:
        return {"signals": signals_list(app=app, limit=200), "currency": reporting_currency(app=app)}

    return _render(request, "analytics/pages/signals.html", app, filters, "signals", load)


@require_http_methods(["GET", "POST"])
@app_page
def org_data_page(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """Upload → preview (the dry-run report) → confirm (the same file, kept in the session until then)."""
    may_import = is_company_admin(user=request.user, app=app)
    preview = None
    if request.method == "POST":
        if not may_import:
            raise PermissionDenied("Only owners and admins of the company may import.")
        kind = request.POST.get("kind")
        if kind not in Import.Kind.values:
            messages.error(request, "Choose what the file holds: organizations or subscriptions.")
            return redirect(reverse("pages:org_data", args=[app.uuid]) + filters.querystring())
        session_key = f"revenue-upload:{app.uuid}:{kind}"
        if request.POST.get("confirm"):
            token = request.session.pop(session_key, None)
            stash = cache.get(f"revenue-upload:{token}") if token else None
            if stash is None or token != request.POST.get("token"):
                messages.error(request, "Upload the file again: the preview expired.")
            else:
                cache.delete(f"revenue-upload:{token}")
                report = import_run(
                    app=app, kind=kind, data=stash["data"], file_name=stash["name"], user=request.user, via="page"
                )
                if report["error_count"]:
                    failed = report["error_count"]
                    messages.error(request, f"The import failed with {failed} error(s); nothing changed.")
                else:
                    messages.success(request, f"Imported {report['counts'].get('rows', 0)} rows.")
            return redirect(reverse("pages:org_data", args=[app.uuid]) + filters.querystring())
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a CSV file.")
            return redirect(reverse("pages:org_data", args=[app.uuid]) + filters.querystring())
        if upload.size is not None and upload.size > imports.MAX_FILE_BYTES:
            messages.error(request, f"The file is larger than {imports.MAX_FILE_BYTES // (1024 * 1024)} MB.")
            return redirect(reverse("pages:org_data", args=[app.uuid]) + filters.querystring())
        data = upload.read(imports.MAX_FILE_BYTES + 1)
        preview = import_run(
            app=app, kind=kind, data=data, file_name=upload.name or "", user=request.user, via="page", dry_run=True
        )
        if not preview["error_count"]:
            # The file waits for the confirmation in the cache (Redis), bound to this session by a token.
            token = secrets.token_urlsafe(24)
            cache.set(f"revenue-upload:{token}", {"data": data, "name": upload.name or ""}, UPLOAD_TTL_SECONDS)
            request.session[session_key] = token
            preview["token"] = token

    def load() -> dict:
        return {
            "imports": [import_report(i) | {"user": i.user} for i in revenue.imports_list(app=app)],
            "has_revenue": revenue.has_revenue_data(app=app),
        }

    extra = {"may_import": may_import, "preview": preview, "max_mb": imports.MAX_FILE_BYTES // (1024 * 1024)}
    return _render(request, "analytics/pages/org_data.html", app, filters, "org_data", load, extra)


def _back_to_org(app: Application, org: str, filters: PageFilters) -> HttpResponse:
    return redirect(reverse("pages:organization", args=[app.uuid, org]) + filters.querystring())


@require_POST
@app_page
def org_note(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """Add a note (any member) or delete one (its author, or an owner/admin)."""
    org = (request.POST.get("org") or "")[:255]
    try:
        if request.POST.get("delete"):
            note_delete(app=app, note_id=int(request.POST["delete"]), user=request.user)  # type: ignore[arg-type]  # a User
            messages.success(request, "Note deleted.")
        else:
            note_create(
                app=app,
                customer_org_id=org,
                author=request.user,  # type: ignore[arg-type]  # login required: a User
                text=request.POST.get("text", ""),
            )
            messages.success(request, "Note added.")
    except ApiError as exc:
        if exc.status_code == 403:
            raise PermissionDenied(exc.message) from exc
        messages.error(request, exc.message + " " + "; ".join(str(d.get("message")) for d in exc.details or []))
    except ValueError:
        messages.error(request, "Unknown note.")
    return _back_to_org(app, org, filters)


@require_POST
@app_page
def org_tag(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """Add or remove a tag (any member)."""
    org = (request.POST.get("org") or "")[:255]
    try:
        if request.POST.get("remove"):
            tag_remove(app=app, customer_org_id=org, label=request.POST["remove"])
        else:
            tag_add(app=app, customer_org_id=org, label=request.POST.get("label", "").strip())
    except ApiError as exc:
        messages.error(request, exc.message + " " + "; ".join(str(d.get("message")) for d in exc.details or []))
    return _back_to_org(app, org, filters)
