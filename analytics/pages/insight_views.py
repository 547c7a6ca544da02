"""Saved insights on the pages: save from the Explorer, Funnels or Retention page, open one at its
stable URL (`/app/<app>/insights/<id>/`), pin it to the overview, delete it. The work is done by
analytics/insights.py, the same services the API calls."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps_registry.models import Application
from ingest.errors import ApiError

from .. import insights as service
from ..models import Insight
from . import explorer as explorer_form
from . import sequences
from .filters import PageFilters
from .views import PageError, _context, _read, app_page


def _chart(kind: str, result: dict[str, Any]) -> dict[str, Any] | None:
    if kind == Insight.Kind.FUNNEL:
        return sequences.funnel_chart(result)
    if kind == Insight.Kind.RETENTION:
        return sequences.retention_chart(result) if result["cohorts"] else None
    return explorer_form.chart_of(result) if result["rows"] else None


def insight_figures(insight: Insight) -> dict[str, Any]:
    """An insight's answer now and its chart, or its error (a saved query can time out like any other)."""
    try:
        result = _read("insight_run", insight=insight)
    except PageError as exc:
        return {"insight": insight, "result": None, "chart": None, "error": str(exc)}
    return {"insight": insight, "result": result, "chart": _chart(insight.kind, result), "error": None}


def pinned_figures(app: Application) -> list[dict[str, Any]]:
    """The overview's pinned insights (at most six), each with its chart id."""
    out = []
    for insight in service.insights_list(app=app, pinned=True):
        figures = insight_figures(insight)
        figures["chart_id"] = f"pinned-{insight.pk}"
        out.append(figures)
    return out


@require_GET
@app_page
def insights(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    context = {"insights": service.insights_list(app=app), "pins_max": service.INSIGHT_PINS_MAX}
    return render(request, "analytics/pages/insights.html", _context(request, app, filters, "insights", **context))


@require_GET
@app_page
def insight(request: HttpRequest, app: Application, filters: PageFilters, insight_id: int) -> HttpResponse:
    found = service.insight_get(app=app, insight_id=insight_id)
    if found is None:
        raise Http404("Unknown insight.")
    figures = insight_figures(found)
    result = figures["result"]
    context = {
        **figures,
        "rows": sequences.retention_rows(result) if result and found.kind == Insight.Kind.RETENTION else [],
        "may_change": service.may_change(user=request.user, insight=found),
        "query_json": json.dumps(found.query, indent=2),
    }
    return render(request, "analytics/pages/insight.html", _context(request, app, filters, "insights", **context))


@require_POST
@app_page
def insight_save(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponseBase:
    """The form under a result: its name, kind and query (JSON); then the insight's own page."""
    try:
        query = json.loads(request.POST.get("query", ""))
    except ValueError:
        query = None
    data = {"name": request.POST.get("name", ""), "kind": request.POST.get("kind", ""), "query": query}
    if request.POST.get("pinned"):
        data["pinned"] = True
    try:
        saved = service.insight_create(app=app, user=request.user, data=data)
    except ApiError as exc:
        details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details or [])
        messages.error(request, f"Not saved. {exc.message} {details}".strip())
        return redirect(request.POST.get("next") or f"/app/{app.uuid}/")
    messages.success(request, f"Saved “{saved.name}”.")
    return redirect("pages:insight", app_uuid=app.uuid, insight_id=saved.pk)


@require_POST
@app_page
def insight_change(request: HttpRequest, app: Application, filters: PageFilters, insight_id: int) -> HttpResponseBase:
    """Pin, unpin or delete (the author, an owner or an admin)."""
    found = service.insight_get(app=app, insight_id=insight_id)
    if found is None:
        raise Http404("Unknown insight.")
    action = request.POST.get("action")
    try:
        if action == "delete":
            service.insight_delete(user=request.user, insight=found)
            messages.success(request, f"Deleted “{found.name}”.")
            return redirect("pages:insights", app_uuid=app.uuid)
        service.insight_pin(user=request.user, insight=found, pinned=action == "pin")
        messages.success(request, "Pinned to the overview." if action == "pin" else "Unpinned.")
    except ApiError as exc:
        messages.error(request, exc.message)
    return redirect("pages:insight", app_uuid=app.uuid, insight_id=found.pk)
