"""Revenue-aware signals, their priority, and the `signal.raised` webhook.

Two signals need money, so they are evaluated here, at the end of the health scan (health.py calls
`revenue_signals_scan` in its transaction), over every paying org (MRR > 0 now), seen or not:
- revenue_at_risk: MRR > 0 and health score < ANALYTICS_HEALTH_WATCH_MIN (40);
- inactive_paying: MRR > 0 and no event in the last 14 days (UTC days, today included), including
  orgs never seen in events.
Activation, clearing and dismissal work as for the other signals (health.py).

Priority of an org (a number, higher first): the sum over its active, undismissed signals of
    weight(signal) × (1 + log10(1 + MRR))      MRR in the reporting currency, 0 when not paying
with weights revenue_at_risk 5, inactive_paying 4, usage_drop 3, inactive 2, expansion_candidate 1.
So at equal signals a higher MRR ranks higher, and a paying org ranks above a non-paying org with the
same signal (factor 1 at MRR 0); more signals rank higher. Rounded to 2 places.

`signal.raised` goes out once per activation (a signal that clears and is raised again is a new
activation) to the endpoints subscribed to it, through the webhook machinery (signed, retried, logged,
replayable): the message's source is `signal:<signal id>:<activation time>`, unique per endpoint.
"""

from __future__ import annotations

import heapq
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps_registry.models import Application
from apps_registry.webhook_events import WebhookEventType
from revenue import selectors as revenue
from revenue.services import reporting_currency
from webhooks import schemas as webhook_schemas
from webhooks.services import messages_emit

from .models import OrgSignal
from .revenue_health import health_of

SIGNALS_DOC = __doc__
INACTIVE_PAYING_DAYS = 14
SIGNAL_WEIGHTS = {
    OrgSignal.Kind.REVENUE_AT_RISK: 5,
    OrgSignal.Kind.INACTIVE_PAYING: 4,
    OrgSignal.Kind.USAGE_DROP: 3,
    OrgSignal.Kind.INACTIVE: 2,
    OrgSignal.Kind.EXPANSION_CANDIDATE: 1,
}
REVENUE_KINDS = (OrgSignal.Kind.REVENUE_AT_RISK, OrgSignal.Kind.INACTIVE_PAYING)
RISK_KINDS = (
    OrgSignal.Kind.REVENUE_AT_RISK,
    OrgSignal.Kind.INACTIVE_PAYING,
    OrgSignal.Kind.USAGE_DROP,
    OrgSignal.Kind.INACTIVE,
)


def signal_priority(*, kinds: list[str], mrr: Decimal) -> float:
    """The priority formula above (one definition: the API, the pages, the webhook)."""
    factor = 1 + math.log10(1 + float(max(mrr, Decimal(0))))
    return round(sum(SIGNAL_WEIGHTS.get(kind, 1) for kind in kinds) * factor, 2)  # type: ignore[call-overload]


def revenue_signals_active(*, mrr: Decimal, score: int | None, last_seen: datetime | None, today: datetime) -> set[str]:
    active = set()
    if mrr > 0 and score is not None and score < settings.ANALYTICS_HEALTH_WATCH_MIN:
        active.add(str(OrgSignal.Kind.REVENUE_AT_RISK))
    first_quiet_day = today.date() - timedelta(days=INACTIVE_PAYING_DAYS - 1)
    if mrr > 0 and (last_seen is None or last_seen.date() < first_quiet_day):
        active.add(str(OrgSignal.Kind.INACTIVE_PAYING))
    return active


def revenue_signals_scan(*, app: Application, now: datetime | None = None) -> dict[str, int]:
    """Raise and clear the two revenue signals, then send `signal.raised` for every activation at `now`.

    Runs inside the scan's transaction: the signal rows and their webhook messages commit together.
    """
    now = now or timezone.now()
    paying = revenue.paying_orgs_at(app=app, at=now)
    health = health_of(app=app)
    current = {
        (s.customer_org_id, s.kind): s
        for s in OrgSignal.objects.filter(application=app, kind__in=REVENUE_KINDS, cleared_at__isnull=True)
    }
    raised = cleared = 0
    wanted: set[tuple[str, str]] = set()
    for org, mrr in paying.items():
        h = health.get(org)
        for kind in revenue_signals_active(
            mrr=mrr, score=h.score if h else None, last_seen=h.last_seen if h else None, today=now
        ):
            wanted.add((org, kind))
    to_raise = wanted - set(current)
    if to_raise:  # in bulk: thousands of paying orgs can turn quiet on one daily scan
        cleared_rows = {
            (s.customer_org_id, s.kind): s.pk
            for s in OrgSignal.objects.filter(application=app, kind__in=REVENUE_KINDS, cleared_at__isnull=False).only(
                "pk", "customer_org_id", "kind"
            )
        }
        again = [cleared_rows[key] for key in to_raise if key in cleared_rows]
        OrgSignal.objects.filter(pk__in=again).update(active_since=now, cleared_at=None, dismissed_at=None)
        OrgSignal.objects.bulk_create(
            [
                OrgSignal(application=app, customer_org_id=org, kind=kind, active_since=now)
                for org, kind in to_raise
                if (org, kind) not in cleared_rows
            ],
            ignore_conflicts=True,
        )
        raised = len(to_raise)
    stale = [current[key].pk for key in set(current) - wanted]
    if stale:
        cleared = OrgSignal.objects.filter(pk__in=stale).update(cleared_at=now)
    sent = signals_notify(app=app, since=now, paying=paying, health=health)
    return {"revenue_raised": raised, "revenue_cleared": cleared, "signal_webhooks": sent}


def signals_notify(*, app: Application, since: datetime, paying: dict | None = None, health: dict | None = None) -> int:
    """`signal.raised` messages for the activations at or after `since` (any kind); idempotent."""
    activations = list(OrgSignal.objects.filter(application=app, cleared_at__isnull=True, active_since__gte=since))
    if not activations:
        return 0
    org_ids = sorted({s.customer_org_id for s in activations})
    now = since
    paying = paying if paying is not None else revenue.paying_orgs_at(app=app, at=now)
    health = health if health is not None else health_of(app=app, org_ids=org_ids)
    names = revenue.display_names(app=app, org_ids=org_ids)
    kinds_of: dict[str, list[str]] = {}
    for s in OrgSignal.objects.filter(
        application=app, customer_org_id__in=org_ids, cleared_at__isnull=True, dismissed_at__isnull=True
    ):
        kinds_of.setdefault(s.customer_org_id, []).append(s.kind)
    currency = reporting_currency(app=app)
    items = []
    for s in activations:
        mrr = paying.get(s.customer_org_id, Decimal(0))
        h = health.get(s.customer_org_id)
        items.append(
            (
                f"signal:{s.pk}:{int(s.active_since.timestamp() * 1_000_000)}",
                s.active_since,
                {
                    "app_uuid": str(app.uuid),
                    "customer_org_id": s.customer_org_id,
                    "display_name": names.get(s.customer_org_id),
                    "signal": s.kind,
                    "active_since": webhook_schemas.iso(s.active_since),
                    "priority": signal_priority(kinds=kinds_of.get(s.customer_org_id, [s.kind]), mrr=mrr),
                    "mrr": revenue.money(mrr),
                    "currency": currency,
                    "health": {"score": h.score if h else None, "bucket": h.bucket if h else None},
                },
            )
        )
    return messages_emit(application=app, event_type=WebhookEventType.SIGNAL_RAISED, items=items)


# --- Reads: the Signals list ---------------------------------------------------------------------------


def signals_list(*, app: Application, limit: int = 100, now: datetime | None = None) -> dict:
    """One row per org with an active signal (dismissed ones listed, flagged), highest priority first.

    The order and the summary need each org's live kinds and MRR alone (MRR from the snapshot cache);
    the signals' dates, names and health are read for the returned page only.
    """
    now = now or timezone.now()
    with revenue.consistent_read():
        live_kinds: dict[str, list[str]] = {}  # org: its undismissed kinds (empty: all dismissed)
        for org, kind, dismissed in (
            OrgSignal.objects.filter(application=app, cleared_at__isnull=True)
            .order_by()
            .values_list("customer_org_id", "kind", "dismissed_at")
        ):
            kinds = live_kinds.setdefault(org, [])
            if dismissed is None:
                kinds.append(kind)
        paying = revenue.mrr_by_org_at(app=app, at=now)
        mrr = {org: paying.get(org, Decimal(0)) for org in live_kinds}
        priority = {org: signal_priority(kinds=live, mrr=mrr[org]) if live else 0.0 for org, live in live_kinds.items()}
        shown = heapq.nsmallest(limit, live_kinds, key=lambda org: (-priority[org], -mrr[org], org))
        signals: dict[str, list[dict]] = {}
        for org, kind, since, dismissed in (
            OrgSignal.objects.filter(application=app, cleared_at__isnull=True, customer_org_id__in=shown)
            .order_by("customer_org_id", "kind")
            .values_list("customer_org_id", "kind", "active_since", "dismissed_at")
        ):
            signals.setdefault(org, []).append({"type": kind, "since": since, "dismissed": dismissed is not None})
        health = health_of(app=app, org_ids=shown)
        names = revenue.display_names(app=app, org_ids=shown)
    items: list[dict[str, Any]] = []
    for org in shown:
        h = health.get(org)
        items.append(
            {
                "customer_org_id": org,
                "signals": signals.get(org, []),
                "priority": priority[org],
                "mrr": revenue.money(mrr[org]),
                "display_name": names.get(org),
                "health": {"score": h.score if h else None, "bucket": h.bucket if h else None},
                "last_seen": h.last_seen if h else None,
            }
        )
    at_risk = sum((mrr[org] for org, live in live_kinds.items() if set(live) & set(RISK_KINDS)), Decimal(0))
    expansion = sum(
        (mrr[org] for org, live in live_kinds.items() if OrgSignal.Kind.EXPANSION_CANDIDATE in live), Decimal(0)
    )
    return {
        "summary": {
            "orgs": sum(1 for live in live_kinds.values() if live),
            "mrr_at_risk": revenue.money(at_risk),
            "expansion_mrr": revenue.money(expansion),
        },
        "orgs": items,
        "total": len(live_kinds),
    }
