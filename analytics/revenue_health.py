"""Money next to health: the revenue figures that need health, and the Revenue × Health matrix.

`revenue` owns the MRR arithmetic (revenue/selectors.py); this module only joins it with the health
model, read through `health_of` (one place to change when the health model changes).

Revenue × Health: a 2×2 of paying organizations (MRR > 0 now). Good health = score ≥
ANALYTICS_HEALTH_HEALTHY_MIN (70); high MRR = MRR ≥ the median MRR of the paying orgs (the mean of the
two middle values for an even count). Paying orgs without a health score (never seen in events) count
as low health. Cells: `champions` (good, high), `expansion` (good, low), `revenue_at_risk` (low, high),
`low_value` (low, low); each with org count, total MRR, share of MRR (%), average health (of the orgs
in it that have a score; null when none) and average MRR.
"""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from apps_registry.models import Application
from revenue import selectors as revenue
from revenue.services import reporting_currency

from .models import Organization, OrgSignal

REVENUE_HEALTH_DOC = __doc__
SEGMENTS = ("champions", "expansion", "revenue_at_risk", "low_value")
# Paying orgs per health bucket; `inactive`, never seen or unscored orgs are `no_recent_activity`.
HEALTH_BUCKETS = ("healthy", "watch", "at_risk")
NO_RECENT_ACTIVITY = "no_recent_activity"
TOP_ORGS = 10


@dataclass(frozen=True)
class OrgHealth:
    score: int | None
    bucket: str | None
    last_seen: datetime | None


def health_of(*, app: Application, org_ids: list[str] | None = None, last_seen: bool = True) -> dict[str, OrgHealth]:
    """The current health score and bucket of the app's orgs seen in events (others are absent).

    `last_seen=False` leaves it None: over every org of an app, parsing the timestamps costs more
    than the rest of a revenue answer.
    """
    orgs = Organization.objects.filter(application=app)
    if org_ids is not None and len(org_ids) <= 1000:  # a long IN list costs more than reading the app's orgs
        orgs = orgs.filter(customer_org_id__in=org_ids)
    wanted = set(org_ids) if org_ids is not None else None
    fields = ["customer_org_id", "health_score", "health_bucket"] + (["last_seen"] if last_seen else [])
    return {
        org: OrgHealth(score, bucket or None, seen[0] if seen else None)
        for org, score, bucket, *seen in orgs.values_list(*fields)
        if wanted is None or org in wanted
    }


def active_signals_of(*, app: Application, org_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for org, kind in (
        OrgSignal.objects.filter(
            application=app, customer_org_id__in=org_ids, cleared_at__isnull=True, dismissed_at__isnull=True
        )
        .order_by("kind")
        .values_list("customer_org_id", "kind")
    ):
        out.setdefault(org, []).append(kind)
    return out


def _health_bucket(health: OrgHealth | None) -> str:
    if health is None or (health.bucket not in HEALTH_BUCKETS and health.bucket != "new"):
        return NO_RECENT_ACTIVITY
    return str(health.bucket)


def segments(*, paying: dict[str, Decimal], health: dict[str, OrgHealth]) -> tuple[Decimal, dict[str, str]]:
    """(the median MRR, each paying org's Revenue × Health cell)."""
    if not paying:
        return Decimal(0), {}
    median = Decimal(statistics.median(sorted(paying.values())))
    threshold = settings.ANALYTICS_HEALTH_HEALTHY_MIN
    out = {}
    for org, mrr in paying.items():
        h = health.get(org)
        good = h is not None and h.score is not None and h.score >= threshold
        high = mrr >= median
        out[org] = ("champions" if high else "expansion") if good else ("revenue_at_risk" if high else "low_value")
    return median, out


def org_segments(*, app: Application, now: datetime | None = None) -> dict[str, str]:
    """Each paying org's cell: what the Organizations list filters on (the same orgs as the matrix)."""
    now = now or timezone.now()
    paying = revenue.paying_orgs_at(app=app, at=now)
    return segments(paying=paying, health=health_of(app=app, org_ids=list(paying), last_seen=False))[1]


def revenue_health_get(*, app: Application, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    with revenue.consistent_read():
        paying = revenue.paying_orgs_at(app=app, at=now)
        health = health_of(app=app, org_ids=list(paying), last_seen=False)
    median, cell_of = segments(paying=paying, health=health)
    total = sum(paying.values(), Decimal(0))
    cells = {}
    for name in SEGMENTS:
        orgs = [org for org, cell in cell_of.items() if cell == name]
        mrr = sum((paying[o] for o in orgs), Decimal(0))
        scores = [health[o].score for o in orgs if o in health and health[o].score is not None]
        cells[name] = {
            "orgs": len(orgs),
            "mrr": revenue.money(mrr),
            "share": revenue.percent(mrr, total) if orgs else 0.0,
            "avg_health": round(sum(scores) / len(scores), 1) if scores else None,  # type: ignore[arg-type]
            "avg_mrr": revenue.money(mrr / len(orgs)) if orgs else None,
        }
    return {
        "currency": reporting_currency(app=app),
        "health_threshold": settings.ANALYTICS_HEALTH_HEALTHY_MIN,
        "mrr_threshold": revenue.money(median),
        "paying_orgs": len(paying),
        "cells": cells,
    }


def revenue_get(*, app: Application, month: date | None = None, now: datetime | None = None) -> dict:
    """`GET …/revenue`: now, by health, composition, the month's movements, retention, top orgs."""
    now = now or timezone.now()
    month = month or date(now.year, now.month, 1)
    with revenue.consistent_read():
        paying = revenue.paying_orgs_at(app=app, at=now)
        health = health_of(app=app, org_ids=list(paying), last_seen=False)
        by_product = revenue.by_product(app=app, at=now)
        movements = revenue.movements(app=app, month=month, now=now)
        retention = revenue.retention(app=app, now=now)
        top = heapq.nsmallest(TOP_ORGS, paying.items(), key=lambda item: (-item[1], item[0]))
        top_ids = [org for org, _ in top]
        top_health = health_of(app=app, org_ids=top_ids)
        names = revenue.display_names(app=app, org_ids=top_ids)
        products = revenue.products_by_org_at(app=app, at=now, org_ids=top_ids)
        signals = active_signals_of(app=app, org_ids=top_ids)
    total = sum(paying.values(), Decimal(0))
    per_bucket: dict[str, list[Decimal]] = {b: [] for b in (*HEALTH_BUCKETS, NO_RECENT_ACTIVITY)}
    for org, mrr in paying.items():
        per_bucket.setdefault(_health_bucket(health.get(org)), []).append(mrr)
    at_risk = sum(per_bucket["at_risk"], Decimal(0))
    return {
        "currency": reporting_currency(app=app),
        "as_of": now,
        "mrr": revenue.money(total),
        "arr": revenue.money(total * 12),
        "paying_orgs": len(paying),
        "arpa": revenue.money(total / len(paying)) if paying else None,
        "revenue_at_risk": revenue.money(at_risk),
        "by_health": [
            {
                "bucket": bucket,
                "mrr": revenue.money(sum(values, Decimal(0))),
                "orgs": len(values),
                "share": revenue.percent(sum(values, Decimal(0)), total) if values else 0.0,
            }
            for bucket, values in per_bucket.items()
        ],
        "by_product": by_product,
        "concentration": revenue.concentration(paying),
        "movements": movements,
        "nrr": retention["nrr"],
        "grr": retention["grr"],
        "top_orgs": [
            {
                "customer_org_id": org,
                "display_name": names.get(org),
                "mrr": revenue.money(mrr),
                "products": products.get(org, []),
                "health": {
                    "score": top_health[org].score if org in top_health else None,
                    "bucket": top_health[org].bucket if org in top_health else None,
                },
                "last_seen": top_health[org].last_seen if org in top_health else None,
                "signals": signals.get(org, []),
            }
            for org, mrr in top
        ],
    }


def mrr_trend_get(*, app: Application, months: int, now: datetime | None = None) -> dict:
    with revenue.consistent_read():
        return {"currency": reporting_currency(app=app), "months": revenue.mrr_trend(app=app, months=months, now=now)}
