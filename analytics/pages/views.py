"""The pages: thin views that read the URL, call one analytics selector each and render a template.

Every figure comes from the selectors the read API uses (`analytics.pages.sources`), so a number on
a page and the same number in the API cannot disagree. Another company's application is a 404,
exactly as in the API.
"""

import json
import logging
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from functools import wraps
from typing import Any, Concatenate, ParamSpec
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods
from rest_framework.exceptions import NotFound

from apps_registry import snippets
from apps_registry.models import Application
from ingest.errors import ApiError
from saastracker.csvfile import csv_lines

from ..selectors import application_readable_get, applications_readable
from . import explorer as explorer_form
from .filters import RANGE_PRESETS, PageFilters, filters_from_query
from .links import admin_links, organization_url
from .selectors import environments_list
from .sources import SourceMissing, source

logger = logging.getLogger(__name__)
P = ParamSpec("P")

ORG_COLUMNS = [
    ("customer_org_id", "Organization"),
    ("events", "Events"),
    ("users", "Users"),
    ("last_seen", "Last seen"),
    ("health", "Health"),
    ("mrr", "MRR"),  # issue 20
]
ORG_BUCKETS = [
    ("healthy", "Healthy"),
    ("watch", "Watch"),
    ("at_risk", "At risk"),
    ("inactive", "Inactive"),
    ("new", "New"),
]
ORG_SIGNALS = [
    ("usage_drop", "Usage drop"),
    ("inactive", "Inactive"),
    ("expansion_candidate", "Expansion candidate"),
    ("revenue_at_risk", "Revenue at risk"),  # issue 20
    ("inactive_paying", "Inactive paying"),
]
ORG_SORTS = {"customer_org_id", "events", "users", "last_seen", "health", "first_seen", "mrr"}
ORG_SEGMENTS = [  # issue 20: the Revenue × Health cells
    ("champions", "Champions"),
    ("expansion", "Expansion"),
    ("revenue_at_risk", "Revenue at risk"),
    ("low_value", "Low value"),
]
ORG_PAGE_SIZE = 50
PAGES_LIMIT = 50
STREAM_PAGE_SIZE = 50
STREAM_SOURCES = ("events", "sdk_events")


def _day_label(day: date | str) -> str:
    return day.strftime("%b %-d") if isinstance(day, date) else str(day)


def _series_chart(series: list[dict], fields: list[tuple[str, str]]) -> dict:
    """Chart.js data for a dated series: one line per (key, label); the table beside it has the numbers."""
    return {
        "kind": "line",
        "labels": [_day_label(row["date"]) for row in series],
        "datasets": [{"label": label, "data": [row.get(key) or 0 for row in series]} for key, label in fields],
    }


class PageError(Exception):
    """A figure could not be read: the page shows its error state with this message."""


def _read(name: str, **kwargs: Any) -> Any:
    """Call a selector; turn a missing one, a refused request or a database failure into a PageError."""
    try:
        return source(name)(**kwargs)
    except SourceMissing as exc:
        raise PageError("This view is not available in this installation yet.") from exc
    except NotFound as exc:
        raise Http404(str(exc.detail)) from exc
    except ApiError as exc:
        details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details or [])
        raise PageError(f"{exc.message} {details}".strip()) from exc
    except DatabaseError as exc:
        logger.exception("page read %s failed", name)
        raise PageError("The figures could not be read just now. Try again in a moment.") from exc


def app_page(
    view: Callable[Concatenate[HttpRequest, Application, PageFilters, P], HttpResponseBase],
) -> Callable[Concatenate[HttpRequest, uuid.UUID, P], HttpResponseBase]:
    """Log-in required, the app looked up as in the API (404 for others'), the URL's filters parsed."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, app_uuid: uuid.UUID, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        try:
            app = application_readable_get(user=request.user, app_uuid=app_uuid)
        except NotFound as exc:
            raise Http404("Unknown application.") from exc
        return view(request, app, filters_from_query(request.GET), *args, **kwargs)

    return wrapper


def _context(request: HttpRequest, app: Application, filters: PageFilters, section: str, **extra: Any) -> dict:
    """What the base template needs on every page of an application."""
    range_links = []
    for days in RANGE_PRESETS:
        query = request.GET.copy()
        for key in ("cursor", "before", "range", "from", "to"):
            query.pop(key, None)
        query["range"] = str(days)
        url = f"{request.path}?{query.urlencode()}"
        range_links.append({"days": days, "url": url, "current": days == filters.days and not filters.custom})
    try:
        environments = environments_list(app=app)
    except ApiError:  # its read timed out: the page still renders, the filter offers what the URL holds
        environments = []
    if filters.environment and filters.environment not in environments:
        environments = [filters.environment, *environments]
    return {
        "app": app,
        "apps": applications_readable(user=request.user).order_by("company__name", "name"),
        "filters": filters,
        "range_links": range_links,
        "environments": environments,
        "section": section,
        "admin": admin_links(app=app, user=request.user),
        "ingest_url": snippets.ingest_url(),
        "curl_snippet": snippets.curl_snippet(app_uuid=app.uuid),
        **extra,
    }


def _render(
    request: HttpRequest,
    template: str,
    app: Application,
    filters: PageFilters,
    section: str,
    load: Callable[[], dict],
    extra: dict | None = None,
) -> HttpResponse:
    """Render a page from `load()`'s figures, or its error state when they cannot be read."""
    try:
        data, error = load(), None
    except PageError as exc:
        data, error = {}, str(exc)
    return render(request, template, _context(request, app, filters, section, error=error, **(extra or {}), **data))


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The app picker; with a single application, straight to its overview."""
    apps = list(applications_readable(user=request.user).order_by("company__name", "name"))
    if len(apps) == 1:
        return redirect("pages:overview", app_uuid=apps[0].uuid)
    return render(request, "analytics/pages/home.html", {"apps": apps, "section": "home"})


def _changes(now: dict, before: dict) -> dict[str, dict]:
    """Per figure: the previous range's value and the relative change (None when it was 0)."""
    out = {}
    for key, value in now.items():
        previous = before.get(key) or 0
        out[key] = {"previous": previous, "change": None if not previous else (value - previous) / previous}
    return out


@require_GET
@app_page
def overview(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    source_name = request.GET.get("source") if request.GET.get("source") in STREAM_SOURCES else "events"

    def load() -> dict:
        activity = _read(
            "activity_get",
            app=app,
            date_from=filters.date_from,
            date_to=filters.date_to,
            environment=filters.environment,
            interval=filters.interval,
            source=source_name,
        )
        active = _read("active_users_get", app=app, environment=filters.environment, source=source_name)
        chart = _series_chart(activity["series"], [("events", "Events"), ("users", "Active users")])
        # The range before, of the same length: each figure's change, and the chart's overlay (?compare=1).
        before_to = filters.date_from - timedelta(days=1)
        before = _read(
            "activity_get",
            app=app,
            date_from=before_to - timedelta(days=filters.days - 1),
            date_to=before_to,
            environment=filters.environment,
            interval=filters.interval,
            source=source_name,
        )
        compare = request.GET.get("compare") == "1"
        if compare:
            previous = [row.get("events") or 0 for row in before["series"]][-len(chart["labels"]) :]
            chart["datasets"].append({"label": "Events, previous period", "data": previous})
        from .insight_views import pinned_figures  # its module imports this one

        return {
            "activity": activity,
            "active": active,
            "source": source_name,
            "chart": chart,
            "pinned": pinned_figures(app),
            "changes": _changes(activity["totals"], before["totals"]),
            "compare": compare,
            "compare_url": f"?{urlencode({**request.GET.dict(), 'compare': '' if compare else '1'})}",
        }

    return _render(request, "analytics/pages/overview.html", app, filters, "overview", load)


@require_GET
@app_page
def pages(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    def load() -> dict:
        listed = _read(
            "pages_list",
            app=app,
            date_from=filters.date_from,
            date_to=filters.date_to,
            environment=filters.environment,
            limit=PAGES_LIMIT,
        )
        return {"pages": listed["pages"]}

    return _render(request, "analytics/pages/pages.html", app, filters, "pages", load)


@require_GET
@app_page
def page_trend(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    path = request.GET.get("path") or "/"

    def load() -> dict:
        trend = _read(
            "page_trend_get",
            app=app,
            path=path,
            date_from=filters.date_from,
            date_to=filters.date_to,
            environment=filters.environment,
        )
        totals = {"views": sum(d["views"] for d in trend["series"])}
        chart = _series_chart(trend["series"], [("views", "Events"), ("users", "Users")])
        return {"trend": trend, "totals": totals, "chart": chart}

    return _render(request, "analytics/pages/page_trend.html", app, filters, "pages", load)


@require_GET
@app_page
def features(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    def load() -> dict:
        listed = _read(
            "features_list",
            app=app,
            date_from=filters.date_from,
            date_to=filters.date_to,
            environment=filters.environment,
        )
        chart = {
            "kind": "hbar",
            "format": "percent",
            "labels": [f["name"] for f in listed["features"]],
            "datasets": [{"label": "Adoption", "data": [f["adoption"] for f in listed["features"]]}],
        }
        return {"features": listed["features"], "chart": chart}

    return _render(request, "analytics/pages/features.html", app, filters, "features", load)


def _org_sort(raw: str | None) -> str:
    """`events` or `-events` (descending); the default is the busiest first."""
    raw = raw or "-events"
    return raw if raw.lstrip("-") in ORG_SORTS else "-events"


@require_GET
@app_page
def organizations(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    sort = _org_sort(request.GET.get("sort"))
    bucket = request.GET.get("bucket") if request.GET.get("bucket") in dict(ORG_BUCKETS) else None
    signal = request.GET.get("signal") if request.GET.get("signal") in dict(ORG_SIGNALS) else None
    search = (request.GET.get("q") or "").strip()[:200] or None
    cursor = request.GET.get("cursor") or None
    # issue 20: Revenue × Health segment and tag filters (analytics/revenue_orgs.py)
    segment = request.GET.get("segment") if request.GET.get("segment") in dict(ORG_SEGMENTS) else None
    tag = (request.GET.get("tag") or "").strip()[:64] or None
    table_filters = {
        "sort": sort,
        "bucket": bucket or "",
        "signal": signal or "",
        "q": search or "",
        "segment": segment or "",
        "tag": tag or "",
    }

    def load() -> dict:
        listed = _read(
            "organizations_with_revenue",
            base=source("organizations_list"),
            segment=segment,
            tag=tag,
            app=app,
            date_from=filters.date_from,
            date_to=filters.date_to,
            environment=filters.environment,
            sort=sort,
            bucket=bucket,
            signal=signal,
            search=search,
            limit=ORG_PAGE_SIZE,
            cursor=cursor,
        )
        next_cursor = listed.get("next_cursor") or listed.get("next")
        headers = []
        for key, label in ORG_COLUMNS:
            descending = sort == f"-{key}"
            ascending = sort == key
            toggle = key if descending else f"-{key}"
            headers.append(
                {
                    "key": key,
                    "label": label,
                    "url": filters.querystring(**{**table_filters, "sort": toggle}),
                    "aria_sort": "descending" if descending else "ascending" if ascending else "none",
                }
            )
        for org in listed["organizations"]:
            org["url"] = organization_url(
                app_uuid=app.uuid, customer_org_id=org["customer_org_id"], query=filters.params()
            )
        return {
            "organizations": listed["organizations"],
            "listing": listed,
            "headers": headers,
            "next_url": filters.querystring(**table_filters, cursor=next_cursor) if next_cursor else None,
            "first_url": filters.querystring(**table_filters) if cursor else None,
        }

    extra = {
        "table": table_filters,
        "buckets": ORG_BUCKETS,
        "signals": ORG_SIGNALS,
        "segments": ORG_SEGMENTS,
        "filtered": bool(bucket or signal or search or segment or tag),
    }
    return _render(request, "analytics/pages/organizations.html", app, filters, "organizations", load, extra)


@require_http_methods(["GET", "POST"])
@app_page
def organization(request: HttpRequest, app: Application, filters: PageFilters, customer_org_id: str) -> HttpResponse:
    """One organization; a POST dismisses one of its signals (then back here, so a reload is harmless)."""
    if request.method == "POST":
        signal = request.POST.get("signal", "")
        if signal not in dict(ORG_SIGNALS):
            messages.error(request, "Unknown signal.")
        else:
            try:
                _read(
                    "signal_dismiss",
                    app=app,
                    customer_org_id=customer_org_id,
                    signal=signal,
                    user=request.user,
                    reason=(request.POST.get("reason") or "").strip()[:500],
                )
            except Http404:
                messages.error(request, "That signal is no longer active.")
            except PageError as exc:  # e.g. the application is deactivated (read-only)
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Signal “{dict(ORG_SIGNALS)[signal]}” dismissed.")
        return redirect(organization_url(app_uuid=app.uuid, customer_org_id=customer_org_id, query=filters.params()))

    def load() -> dict:
        org = _read(  # issue 20: with subscriptions, MRR trend, notes, tags (analytics/revenue_orgs.py)
            "organization_with_revenue",
            app=app,
            customer_org_id=customer_org_id,
            base=lambda: source("organization_get")(
                app=app,
                customer_org_id=customer_org_id,
                date_from=filters.date_from,
                date_to=filters.date_to,
                environment=filters.environment,
            ),
        )
        latest = _read(
            "stream_page_get",
            app=app,
            source="events",
            limit=20,
            before=None,
            event=None,
            customer_org_id=customer_org_id,
            environment=filters.environment,
            user=None,
        )
        components = org.get("health", {}).get("components") or {}
        if isinstance(components, dict):
            components = [{"name": k, "value": v} for k, v in components.items()]
        chart = _series_chart(org.get("series", []), [("events", "Events"), ("users", "Users")])
        history = org.get("health", {}).get("history") or []
        history_chart = {
            "kind": "line",
            "labels": [_day_label(h["date"]) for h in history],
            "datasets": [{"label": "Health score", "data": [h["score"] for h in history]}],
        }
        # The table beside the line: the days the bucket changed (the first day, then each move).
        moves = [h for i, h in enumerate(history) if i == 0 or h["bucket"] != history[i - 1]["bucket"]]
        return {
            "org": org,
            "may_delete_notes": source("is_company_admin")(user=request.user, app=app),  # issue 20
            "components": components,
            "chart": chart,
            "history_chart": history_chart,
            "history_moves": moves[::-1],
            "latest": [_stream_row(e) for e in latest["events"]],
        }

    return _render(request, "analytics/pages/organization.html", app, filters, "organizations", load)


@require_http_methods(["GET", "POST"])
def organization_by_id(request: HttpRequest, app_uuid: uuid.UUID) -> HttpResponseBase:
    """An organization whose id cannot be a path segment (dots only), named by `?id=`."""
    return organization(request, app_uuid, request.GET.get("id", ""))


def _stream_row(event: dict) -> dict:
    """One stream row: the columns shown collapsed, and the whole event for the expanded view."""
    received = parse_datetime(event.get("received_at") or "")
    occurred = parse_datetime(event.get("occurred_at") or "")
    return {
        "key": event.get("event_id"),
        "received_at": received,
        "received_raw": event.get("received_at"),
        "occurred_at": occurred,
        "name": event.get("event") or event.get("event_name") or "",
        "org": event.get("customer_org_id") or "",
        "user": event.get("user_hash") or event.get("user_id") or event.get("anon_id") or "",
        "environment": event.get("environment") or "",
        "path": event.get("path") or "",
        "fields": sorted(event.items()),
    }


def _stream_query(request: HttpRequest, filters: PageFilters) -> dict[str, Any]:
    src = request.GET.get("source") if request.GET.get("source") in STREAM_SOURCES else "events"
    wanted = {name: (request.GET.get(name) or "").strip()[:200] or None for name in ("event", "org", "user")}
    return {
        "source": src,
        "event": wanted["event"],
        # Organizations and environments exist only on /v1/events rows.
        "customer_org_id": wanted["org"] if src == "events" else None,
        "environment": filters.environment if src == "events" else None,
        "user": wanted["user"],
    }


@require_GET
@app_page
def stream(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    query = _stream_query(request, filters)
    before = request.GET.get("before") or None

    def load() -> dict:
        page = _read("stream_page_get", app=app, limit=STREAM_PAGE_SIZE, before=before, **query)
        rows = [_stream_row(e) for e in page["events"]]
        keep = {k: v for k, v in request.GET.items() if k in ("source", "event", "org", "user")}
        return {
            "rows": rows,
            "older_url": filters.querystring(**keep, before=page["next"]) if page.get("next") else None,
            "newest_url": filters.querystring(**keep) if before else None,
            "live": before is None,
        }

    params = filters.params(**{k: v for k, v in request.GET.items() if k in ("source", "event", "org", "user")})
    extra = {
        "stream": {**query, "org": query["customer_org_id"] or ""},
        "poll_url": reverse("pages:stream_rows", args=[app.uuid]) + "?" + urlencode(params),
        "poll_ms": settings.PAGES_STREAM_POLL_MS,
    }
    return _render(request, "analytics/pages/stream.html", app, filters, "stream", load, extra)


@require_GET
@app_page
def stream_rows(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """The live poll: the newest page (one indexed query), less the rows the browser already shows.

    The browser sends the receive time of its newest row (`since`) and the ids it shows at that time
    (`seen`), so an event committed with the same timestamp is still delivered once.
    """
    since = parse_datetime(request.GET.get("since") or "")
    seen = set(request.GET.getlist("seen"))
    try:
        page = _read("stream_page_get", app=app, limit=STREAM_PAGE_SIZE, before=None, **_stream_query(request, filters))
    except PageError:
        return HttpResponse(status=503)
    rows = [_stream_row(e) for e in page["events"]]
    if since is not None:
        rows = [
            r
            for r in rows
            if r["received_at"] is not None
            and (r["received_at"] > since or (r["received_at"] == since and r["key"] not in seen))
        ]
    return render(request, "analytics/pages/_stream_rows.html", {"rows": rows, "fresh": True})


@require_GET
@app_page
def explorer(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    form = explorer_form.form_from_query(request.GET, filters)
    result, error = None, None
    if form.submitted:
        try:
            result = _read("query_run", app=app, query=form.query())
        except PageError as exc:
            error = str(exc)
    context = {
        "form": form,
        "result": result,
        "chart": explorer_form.chart_of(result) if result else None,
        "csv_url": reverse("pages:explorer_csv", args=[app.uuid]) + "?" + request.GET.urlencode() if result else None,
        "query_error": error,
        "choices": explorer_form.CHOICES,
        "insight_kind": "query",
        "insight_query": json.dumps(form.query()),
    }
    return render(request, "analytics/pages/explorer.html", _context(request, app, filters, "explorer", **context))


@require_GET
@app_page
def explorer_csv(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponseBase:
    """The explorer's result as CSV: the same query, the same columns and rows as on the page."""
    form = explorer_form.form_from_query(request.GET, filters)
    try:
        result = _read("query_run", app=app, query=form.query())
    except PageError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    lines = list(csv_lines(result["columns"], result["rows"]))
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="explorer-{app.uuid}-{stamp}.csv"'
    return response


@require_http_methods(["GET", "POST"])
@app_page
def health_model(request: HttpRequest, app: Application, filters: PageFilters) -> HttpResponse:
    """Settings → Health model: the model, its backtest and change log; owners/admins preview and save."""
    from ..api.health import health_model_state, parse_model_input
    from ..health_backtest import health_backtest, health_model_preview
    from ..models import Feature
    from ..selectors import application_writable
    from ..services import health_model_save

    writable = application_writable(user=request.user, app=app)
    preview = None
    form_error = None
    submitted: dict[str, Any] | None = None
    if request.method == "POST":
        if not writable:
            return HttpResponse("Only owners and admins of the company may change the health model.", status=403)
        submitted = _health_form(request.POST)
        try:
            changes = parse_model_input(app, submitted)
        except ApiError as exc:
            detail = (exc.details or [{}])[0]
            form_error = f"{detail.get('field')}: {detail.get('message')}"
        else:
            if request.POST.get("action") == "save":
                saved = health_model_save(app=app, config=changes, user=request.user)
                if saved is None:
                    messages.info(request, "Nothing changed.")
                else:
                    messages.success(request, "Health model saved: the organizations are rescored within a minute.")
                return redirect(reverse("pages:health_model", args=[app.uuid]) + filters.querystring())
            try:
                preview = health_model_preview(app=app, config=changes)
            except ApiError as exc:  # the preview's read ran past ANALYTICS_QUERY_TIMEOUT
                form_error = exc.message

    def load() -> dict:
        state = health_model_state(app)
        model = state["model"]
        if submitted is not None:
            model = {**model, **{k: v for k, v in submitted.items() if k != "weights"}}
            model["weights"] = {**state["model"]["weights"], **submitted.get("weights", {})}
        try:
            backtest = health_backtest(app=app)
        except ApiError as exc:
            raise PageError(exc.message) from exc
        chart = {
            "kind": "bar",
            "labels": [f"{b['from']}-{b['to']}" for b in backtest["distribution"]["churned"]],
            "datasets": [
                {"label": "Churned", "data": [b["orgs"] for b in backtest["distribution"]["churned"]]},
                {"label": "Retained", "data": [b["orgs"] for b in backtest["distribution"]["retained"]]},
            ],
        }
        distribution = list(zip(backtest["distribution"]["churned"], backtest["distribution"]["retained"], strict=True))
        return {
            "model": model,
            "changes": state["changes"],
            "backtest": backtest,
            "backtest_chart": chart,
            "distribution": distribution,
            "features": list(Feature.objects.filter(application=app).values_list("name", flat=True)),
        }

    extra = {"writable": writable, "preview": preview, "form_error": form_error}
    return _render(request, "analytics/pages/health_model.html", app, filters, "health", load, extra)


_HEALTH_INTS = (
    "healthy_min",
    "watch_min",
    "drop_watch_pct",
    "drop_at_risk_pct",
    "silence_days",
    "inactive_days",
    "regular_days",
    "new_days",
    "new_exit_active_days",
)


def _health_form(post: Any) -> dict[str, Any]:
    """The form's fields as the API's JSON body (the API's validation then names a bad member)."""
    data: dict[str, Any] = {}
    for key in _HEALTH_INTS:
        raw = (post.get(key) or "").strip()
        if raw:
            data[key] = raw
    weights = {}
    for key in ("recency", "trend", "breadth", "depth"):
        raw = (post.get(f"weight_{key}") or "").strip()
        if raw:
            weights[key] = raw
    if weights:
        data["weights"] = weights
    if post.get("features_mode") == "some":
        data["features"] = post.getlist("features")
    elif post.get("features_mode") == "all":
        data["features"] = None
    return data
