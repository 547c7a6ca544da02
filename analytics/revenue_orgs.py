"""Organizations with money: display name, MRR, products, tags; sort by MRR; filter by segment and tag.

A thin layer around `selectors.organizations_list` / `organization_get` (which the health model owns):
- every item gains `display_name` (from the organizations import, else null), `mrr` (now, decimal
  string), `products` (with an active subscription), `tags` and `seen_in_events`;
- with `segment`, `tag` or `sort=mrr|-mrr` the set of orgs is chosen here: the orgs seen in events
  and the orgs only imported (never seen, listed with zero figures and no health), filtered, ordered
  (by MRR, else by the requested sort with never-seen orgs after the seen ones), then paged; the seen
  orgs' items still come from `organizations_list`, so their figures are the same as everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone
from rest_framework.exceptions import NotFound

from apps_registry.models import Application
from revenue import selectors as revenue
from revenue.models import CustomerOrg

from .models import Organization, OrgSignal
from .revenue_health import org_segments

REVENUE_SORTS = ("-mrr", "mrr")


def _enrich(app: Application, items: list[dict], mrr: dict[str, Decimal], now: datetime) -> None:
    ids = [i["customer_org_id"] for i in items]
    names = revenue.display_names(app=app, org_ids=ids)
    products = revenue.products_by_org_at(app=app, at=now, org_ids=ids)
    tags = revenue.tags_of(app=app, org_ids=ids)
    for item in items:
        org = item["customer_org_id"]
        item["display_name"] = names.get(org)
        item["mrr"] = revenue.money(mrr.get(org, Decimal(0)))
        item["products"] = products.get(org, [])
        item["tags"] = tags.get(org, [])
        item.setdefault("seen_in_events", True)


def _never_seen_item(org: str, signals: list[dict]) -> dict:
    return {
        "customer_org_id": org,
        "events": 0,
        "users": 0,
        "sessions": 0,
        "first_seen": None,
        "last_seen": None,
        "over_limit": False,
        "health": {"score": None, "bucket": None},
        "signals": signals,
        "seen_in_events": False,
    }


def _active_signals(app: Application, **filters: object) -> QuerySet[OrgSignal]:
    """The app's active, undismissed signals (what the list shows and filters on)."""
    return OrgSignal.objects.filter(application=app, cleared_at__isnull=True, dismissed_at__isnull=True, **filters)


def _narrowed(app: Application, ids: set[str], *, signal: str | None, search: str | None) -> set[str]:
    """`ids` with an active `signal`, and whose id or display name contains `search` (any case)."""
    if signal:
        ids = ids & set(_active_signals(app, kind=signal).values_list("customer_org_id", flat=True))
    if search:
        needle = search.lower()
        names = revenue.display_names(app=app, org_ids=sorted(ids))
        ids = {o for o in ids if needle in o.lower() or needle in names.get(o, "").lower()}
    return ids


def _never_seen_ids(app: Application, mrr: dict[str, Decimal], *, signal: str | None, search: str | None) -> list[str]:
    seen = set(Organization.objects.filter(application=app).values_list("customer_org_id", flat=True))
    imported = set(CustomerOrg.objects.filter(application=app).values_list("external_org_id", flat=True))
    ids = (imported | {o for o, v in mrr.items() if v > 0}) - seen
    return sorted(_narrowed(app, ids, signal=signal, search=search))


def _append_never_seen(
    app: Application,
    body: dict,
    mrr: dict[str, Decimal],
    *,
    signal: str | None,
    search: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """After the last page of seen orgs, the orgs only imported (or paying) follow, by id."""
    from .selectors import _cursor_for, _cursor_offset

    never = _never_seen_ids(app, mrr, signal=signal, search=search)
    if not never:
        return
    offset = _cursor_offset(cursor)
    seen = Organization.objects.filter(application=app)
    if search:
        seen = seen.filter(customer_org_id__icontains=search)
    if signal:
        seen = seen.filter(customer_org_id__in=_active_signals(app, kind=signal).values("customer_org_id"))
    start = max(0, offset - seen.count())
    room = limit - len(body["organizations"])
    signals: dict[str, list[dict]] = {}
    extra = never[start : start + room]
    for org, kind, since in _active_signals(app, customer_org_id__in=extra).values_list(
        "customer_org_id", "kind", "active_since"
    ):
        signals.setdefault(org, []).append({"signal": kind, "active_since": since})
    body["organizations"] += [_never_seen_item(o, signals.get(o, [])) for o in extra]
    if start + room < len(never):
        body["next_cursor"] = _cursor_for(offset + limit)


def organizations_with_revenue(
    *,
    app: Application,
    base: Callable[..., dict],
    date_from: date,
    date_to: date,
    environment: str | None,
    sort: str,
    bucket: str | None = None,
    signal: str | None = None,
    search: str | None = None,
    segment: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    now: datetime | None = None,
) -> dict:
    """`GET …/organizations` with the issue-20 additions (see the module docstring)."""
    from .selectors import _cursor_for, _cursor_offset

    now = now or timezone.now()
    window = {"app": app, "date_from": date_from, "date_to": date_to, "environment": environment}
    with revenue.consistent_read():
        mrr = revenue.mrr_by_org_at(app=app, at=now)
        if not (segment or tag or sort in REVENUE_SORTS):
            body = base(**window, sort=sort, bucket=bucket, signal=signal, search=search, limit=limit, cursor=cursor)
            if body["next_cursor"] is None and not bucket:  # the seen orgs are exhausted: the never-seen follow
                _append_never_seen(app, body, mrr, signal=signal, search=search, limit=limit, cursor=cursor)
            _enrich(app, body["organizations"], mrr, now)
            return body
        offset = _cursor_offset(cursor)
        seen = set(Organization.objects.filter(application=app).values_list("customer_org_id", flat=True))
        imported = set(CustomerOrg.objects.filter(application=app).values_list("external_org_id", flat=True))
        ids = seen | imported | {o for o, v in mrr.items() if v > 0}
        if segment:
            ids &= {o for o, cell in org_segments(app=app, now=now).items() if cell == segment}
        if tag:
            ids &= set(revenue.org_ids_tagged(app=app, label=tag))
        if bucket:
            ids &= set(
                Organization.objects.filter(application=app, health_bucket=bucket).values_list(
                    "customer_org_id", flat=True
                )
            )
        ids = _narrowed(app, ids, signal=signal, search=search)
        if sort in REVENUE_SORTS:
            sign = -1 if sort == "-mrr" else 1
            ordered = sorted(ids, key=lambda o: (sign * mrr.get(o, Decimal(0)), o))
        else:
            seen_ids = sorted(ids & seen)
            listed = base(**window, sort=sort, limit=max(1, len(seen_ids)), customer_org_ids=seen_ids)
            ordered = [i["customer_org_id"] for i in listed["organizations"]] + sorted(ids - seen)
        page = ordered[offset : offset + limit]
        page_seen = [o for o in page if o in seen]
        base_sort = "-events" if sort in REVENUE_SORTS else sort  # the order is the page's, not base's
        body = base(**window, sort=base_sort, limit=max(1, len(page_seen)), customer_org_ids=page_seen)
        by_id = {i["customer_org_id"]: i for i in body["organizations"]}
        signals: dict[str, list[dict]] = {}
        for org, kind, since in _active_signals(
            app, customer_org_id__in=[o for o in page if o not in seen]
        ).values_list("customer_org_id", "kind", "active_since"):
            signals.setdefault(org, []).append({"signal": kind, "active_since": since})
        items = [by_id.get(o) or _never_seen_item(o, signals.get(o, [])) for o in page]
        _enrich(app, items, mrr, now)
    body["organizations"] = items
    body["next_cursor"] = _cursor_for(offset + limit) if len(ordered) > offset + limit else None
    return body


def organization_with_revenue(*, app: Application, base: Callable[[], dict], customer_org_id: str) -> dict:
    """One org (seen, or only imported) with its subscriptions, MRR trend, notes and tags."""
    now = timezone.now()
    try:
        item = base()
    except NotFound:
        if not CustomerOrg.objects.filter(application=app, external_org_id=customer_org_id).exists():
            raise
        item = _never_seen_item(customer_org_id, [])
        item.update({"series": [], "top_pages": [], "features_used": []})
    with revenue.consistent_read():
        mrr = revenue.mrr_by_org_at(app=app, at=now)
        _enrich(app, [item], mrr, now)
        item["subscriptions"] = revenue.org_subscriptions(app=app, customer_org_id=customer_org_id, now=now)
        item["mrr_trend"] = revenue.mrr_trend(app=app, months=12, now=now, org_id=customer_org_id)
        item["notes"] = revenue.notes_list(app=app, customer_org_id=customer_org_id)
    return item
