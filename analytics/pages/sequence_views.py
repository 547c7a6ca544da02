"""The Funnels and Retention pages (and their CSV and drop-off list): thin views over the same
entry points as the API (`funnel_run`, `funnel_dropoff`, `retention_run`), so a page and the API
cannot disagree. The form lives in the URL (analytics/pages/sequences.py)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps_registry.models import Application
from saastracker.csvfile import csv_bytes

from . import sequences
from .filters import PageFilters
from .views import PageError, _context, _read, app_page


def _csv(name: str, app: Application, header: list[str], rows: list[list[Any]]) -> HttpResponse:
    """Through the product's one CSV writer (saastracker/csvfile.py): no cell runs as a formula."""
    response = HttpResponse(csv_bytes(header, rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{app.uuid}-{stamp}.csv"'
    return response


def _funnel_result(app: Application, form: sequences.FunnelForm) -> tuple[dict | None, str | None]:
    if not form.submitted:
        return None, None
    try:
        return _read("funnel_run", app=app, query=form.query()), None
    except PageError as exc:
        return None, str(exc)


@require_GET
@app_page
def funnels(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    form = sequences.funnel_form(request.GET, filters)
    result, error = _funnel_result(app, form)
    base = reverse("pages:funnels", args=[app.uuid])
    steps = []
    if result:
        for k, step in enumerate(result["steps"], start=1):
            dropoff = None
            if k > 1:
                dropoff = reverse("pages:funnel_dropoff", args=[app.uuid]) + "?" + form.querystring(step=str(k))
            steps.append({**step, "n": k, "dropoff_url": dropoff})
    context = {
        "form": form,
        "result": result,
        "steps": steps,
        "chart": sequences.funnel_chart(result) if result else None,
        "csv_url": reverse("pages:funnels_csv", args=[app.uuid]) + "?" + form.querystring(run="1") if result else None,
        "query_error": error,
        "choices": sequences.CHOICES,
        "template_urls": [
            (key, label, f"{base}?{sequences.urlencode({**filters.params(), 'template': key})}")
            for key, (label, _steps) in sequences.TEMPLATES.items()
        ],
        "add_url": f"{base}?{form.querystring(add='1')}",
        "insight_kind": "funnel",
        "insight_query": json.dumps(form.query()),
    }
    return render(request, "analytics/pages/funnels.html", _context(request, app, filters, "funnels", **context))


@require_GET
@app_page
def funnels_csv(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """The funnel's table as CSV: one line per (group, step); the whole funnel's group is empty."""
    form = sequences.funnel_form(request.GET, filters)
    form.submitted = True
    result, error = _funnel_result(app, form)
    if result is None:
        return HttpResponse(error or "", status=400, content_type="text/plain; charset=utf-8")
    header = ["group", "step", "event", "count", "conversion", "conversion_from_previous", "median_seconds"]
    rows = []
    for value, steps in [("", result["steps"])] + [(g["value"], g["steps"]) for g in result["breakdown"]]:
        for k, step in enumerate(steps, start=1):
            rows.append([value, k, step["event"], step["count"], step["conversion"],
                         step["conversion_from_previous"], step["median_seconds"]])  # fmt: skip
    return _csv("funnel", app, header, rows)


@require_GET
@app_page
def funnel_dropoff(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """Who reached step k - 1 but not k, each linked to the event stream filtered to them."""
    form = sequences.funnel_form(request.GET, filters)
    result, error = None, None
    try:
        result = _read("funnel_dropoff", app=app, query=form.query(), step=request.GET.get("step", ""))
    except PageError as exc:
        error = str(exc)
    entities = []
    if result:
        stream = reverse("pages:stream", args=[app.uuid])
        key = "org" if form.count_by == "orgs" else "user"
        for entity in result["entities"]:
            link = f"{stream}?{sequences.urlencode({**filters.params(), 'source': form.source, key: entity['id']})}"
            entities.append({**entity, "stream_url": link})
    context = {
        "form": form,
        "result": result,
        "entities": entities,
        "query_error": error,
        "back_url": reverse("pages:funnels", args=[app.uuid]) + "?" + form.querystring(run="1"),
    }
    return render(request, "analytics/pages/funnel_dropoff.html", _context(request, app, filters, "funnels", **context))


def _retention_result(app: Application, form: sequences.RetentionForm) -> tuple[dict | None, str | None]:
    if not form.submitted:
        return None, None
    try:
        return _read("retention_run", app=app, query=form.query()), None
    except PageError as exc:
        return None, str(exc)


@require_GET
@app_page
def retention(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    form = sequences.retention_form(request.GET, filters)
    result, error = _retention_result(app, form)
    context = {
        "form": form,
        "result": result,
        "rows": sequences.retention_rows(result) if result else [],
        "period_numbers": range(1, len(result["average"]) + 1) if result else [],
        "chart": sequences.retention_chart(result) if result and result["cohorts"] else None,
        "csv_url": reverse("pages:retention_csv", args=[app.uuid]) + "?" + form.querystring(run="1")
        if result
        else None,
        "query_error": error,
        "choices": sequences.CHOICES,
        "insight_kind": "retention",
        "insight_query": json.dumps(form.query()),
    }
    return render(request, "analytics/pages/retention.html", _context(request, app, filters, "retention", **context))


@require_GET
@app_page
def retention_csv(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """The cohort table as CSV: cohort start, size, then retained count per period (`*` marks incomplete)."""
    form = sequences.retention_form(request.GET, filters)
    form.submitted = True
    result, error = _retention_result(app, form)
    if result is None:
        return HttpResponse(error or "", status=400, content_type="text/plain; charset=utf-8")
    periods = len(result["average"])
    header = ["cohort", "size", *(f"{result['period']}_{n}" for n in range(1, periods + 1))]
    rows = [
        [c["start"], c["size"], *(n if done else f"{n}*" for n, done in zip(c["retained"], c["complete"], strict=True))]
        for c in result["cohorts"]
    ]
    rows.append(["average", "", *("" if a is None else a for a in result["average"])])
    return _csv("retention", app, header, rows)
