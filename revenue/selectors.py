"""The MRR arithmetic, defined once: the API, the pages, the health scan and the tests all call these.

Definitions (all instants UTC; amounts in the app's reporting currency, `Decimal`):
- A subscription is active on instant t when `start_at ≤ t` and (`end_at` is null or `t < end_at`).
- MRR at t: the sum of `mrr` of the subscriptions active on t; an org's MRR at t likewise.
- MRR at the end of a month: at its last instant (the first instant of the next month minus 1 µs),
  so a subscription ending exactly at midnight on the 1st still counts in the month before; for
  the current month: now. The start of a month is the end of the month before.

What one subscriptions snapshot determines (the set active on an instant, the MRR started and ended
per month, each org's first paid start) is computed once and cached under the snapshot
(revenue/snapshots.py): an answer then costs a lookup, not a scan of the app's subscriptions.
"""

from __future__ import annotations

import bisect
import copy
import heapq
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps_registry.models import Application

from . import snapshots
from .models import CustomerOrg, Import, Note, Subscription, Tag

ZERO = Decimal(0)
CENT = Decimal("0.01")
EPSILON = timedelta(microseconds=1)
TREND_MONTHS = (12, 24, 36)


def money(value: Decimal | None) -> str | None:
    """A decimal string with 2 places, e.g. "1234.50" (never a float)."""
    if value is None:
        return None
    return str(Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP))


def percent(part: Decimal, whole: Decimal) -> float | None:
    """`part / whole` as a percentage rounded to 2 places (a number: shares are not money)."""
    if not whole:
        return None
    return float((Decimal(100) * part / whole).quantize(CENT, rounding=ROUND_HALF_UP))


@contextmanager
def consistent_read() -> Iterator[None]:
    """One snapshot for all the reads of an answer (an import may commit in between), under a timeout.

    REPEATABLE READ only when this opens the transaction (in tests it is nested and the outer one
    decides); the statement timeout is transaction-local either way.
    """
    timeout_ms = max(1, int(float(getattr(settings, "ANALYTICS_QUERY_TIMEOUT", 10)) * 1000))
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if outermost:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
        yield


def _rows(sql: str, params: list | dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- Months ------------------------------------------------------------------------------------------


def month_start(day: date) -> datetime:
    return datetime(day.year, day.month, 1, tzinfo=UTC)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after (or before) `day`'s month."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def months_back(at: datetime, months: int) -> datetime:
    """The same instant `months` calendar months earlier (the day clamped to the month's length)."""
    first = add_months(at.date(), -months)
    last_day = (add_months(first, 1) - timedelta(days=1)).day
    return at.replace(year=first.year, month=first.month, day=min(at.day, last_day))


def month_end_instant(month: date, now: datetime) -> datetime:
    """The instant a month's MRR is read at: its last microsecond, or now for the current month."""
    end = month_start(add_months(month, 1)) - EPSILON
    return min(end, now)


# --- MRR ---------------------------------------------------------------------------------------------

_ACTIVE = "application_id = %s AND start_at <= %s AND (end_at IS NULL OR end_at > %s)"

# The subscriptions active on an instant, and the span around it in which that set cannot change: from
# the last start_at/end_at at or before the instant to the first one after it (null: unbounded).
_ACTIVE_SET_SQL = f"""
    SELECT 'span' AS kind, NULL::text AS org, NULL::text AS product, NULL::numeric AS mrr,
        greatest(max(start_at) FILTER (WHERE start_at <= %s), max(end_at) FILTER (WHERE end_at <= %s)) AS since,
        least(min(start_at) FILTER (WHERE start_at > %s), min(end_at) FILTER (WHERE end_at > %s)) AS until
    FROM revenue_subscription WHERE application_id = %s
    UNION ALL
    SELECT 'row', external_org_id, product_code, mrr, NULL, NULL FROM revenue_subscription WHERE {_ACTIVE}
"""


@dataclass(frozen=True)
class ActiveSet:
    """What is active on every instant of [since, until) of snapshot `key`: per org MRR and products,
    per product totals, and `derived`: figures computed from this set and others of the same snapshot.
    """

    key: snapshots.SnapshotKey | None
    since: datetime | None
    until: datetime | None
    mrr: dict[str, Decimal]
    products: dict[str, list[str]]
    by_product: list[dict]
    derived: dict[Hashable, Any] = field(default_factory=dict, compare=False)


def _covers(at: datetime) -> Callable[[Hashable], bool]:
    def covers(span: Hashable) -> bool:
        since: datetime | None
        until: datetime | None
        since, until = span  # type: ignore[misc]  # the discriminator `_active_set` stores
        return (since is None or since <= at) and (until is None or at < until)

    return covers


def _active_set_build(
    key: snapshots.SnapshotKey | None,
    since: datetime | None,
    until: datetime | None,
    rows: list[tuple[str, str, Decimal]],
) -> ActiveSet:
    """The set from its active rows (org, product, mrr), whichever way they were read."""
    rows.sort(key=itemgetter(1))  # products in code point order, per org and among equal totals
    mrr: dict[str, Decimal] = {}
    products: dict[str, list[str]] = {}
    totals: dict[str, list] = {}  # product: [mrr, subscriptions, orgs], in product order
    for org, product, amount in rows:  # 36,000 rows in the bench's set: kept to plain dict operations
        if org in mrr:
            mrr[org] += amount
            codes = products[org]
            if codes[-1] != product:  # rows come by product: an org's repeat of one is its last
                codes.append(product)
        else:
            mrr[org] = amount
            products[org] = [product]
        total = totals.get(product)
        if total is None:
            totals[product] = [amount, 1, {org}]
        else:
            total[0] += amount
            total[1] += 1
            total[2].add(org)
    by_product = [
        {"product_code": p, "mrr": money(m), "subscriptions": n, "orgs": len(orgs)}
        for p, (m, n, orgs) in sorted(totals.items(), key=lambda item: -item[1][0])  # stable: ties by product
    ]
    return ActiveSet(key, since, until, mrr, products, by_product)


def _active_set_encode(active: ActiveSet) -> dict:
    orgs = list(active.mrr)
    return {
        "orgs": orgs,
        "cents": [int(active.mrr[org] * 100) for org in orgs],
        "products": [active.products[org] for org in orgs],
        "by_product": active.by_product,
    }


def _active_set_decode(
    key: snapshots.SnapshotKey, since: datetime | None, until: datetime | None, payload: dict
) -> ActiveSet:
    mrr = {org: Decimal(cents) * CENT for org, cents in zip(payload["orgs"], payload["cents"], strict=True)}
    products = dict(zip(payload["orgs"], payload["products"], strict=True))
    return ActiveSet(key, since, until, mrr, products, payload["by_product"])


def _cached_active_set(*, app: Application, at: datetime) -> ActiveSet | None:
    """From this process's cache, else from the part the snapshot's import wrote (None: neither covers `at`)."""
    key = snapshots.snapshot_key(app.id)
    if key is None:
        return None
    return snapshots.cached(app.id, key, "active", partial(_active_set_decode, key), at=at, accept=_covers(at))


def _active_set(*, app: Application, at: datetime) -> ActiveSet:
    """The active set on `at`: cached (in process, or written by the import) when a span covers `at`."""
    if (hit := _cached_active_set(app=app, at=at)) is not None:
        return hit
    key, rows = snapshots.with_snapshot(app.id, _ACTIVE_SET_SQL, [at, at, at, at, app.id, app.id, at, at])
    since: datetime | None = None
    until: datetime | None = None
    active_rows: list[tuple[str, str, Decimal]] = []
    for kind, org, product, amount, low, high in rows:
        if kind == "span":
            since, until = low, high
        else:
            active_rows.append((org, product, amount))
    active = _active_set_build(key, since, until, active_rows)
    if key is not None:
        snapshots.store(app.id, key, "active", active, (since, until))
    return active


def mrr_total_at(*, app: Application, at: datetime) -> Decimal:
    """From the cache, else one sum (an import's "MRR before" need not cache the set it replaces)."""
    if (hit := _cached_active_set(app=app, at=at)) is not None:
        return sum(hit.mrr.values(), ZERO)
    rows = _rows(f"SELECT coalesce(sum(mrr), 0) FROM revenue_subscription WHERE {_ACTIVE}", [app.id, at, at])
    return Decimal(rows[0][0])


def mrr_by_org_at(*, app: Application, at: datetime) -> dict[str, Decimal]:
    """Each org's MRR on instant `at`, for orgs with an active subscription (MRR may be 0)."""
    return dict(_active_set(app=app, at=at).mrr)


def paying_orgs_at(*, app: Application, at: datetime) -> dict[str, Decimal]:
    """Orgs with MRR > 0 on `at` (a paying org "has an active subscription" that is worth something)."""
    return {org: mrr for org, mrr in _active_set(app=app, at=at).mrr.items() if mrr > 0}


def products_by_org_at(*, app: Application, at: datetime, org_ids: list[str] | None = None) -> dict[str, list[str]]:
    products = _active_set(app=app, at=at).products
    if org_ids is None:
        return {org: list(codes) for org, codes in products.items()}
    return {org: list(products[org]) for org in org_ids if org in products}


def by_product(*, app: Application, at: datetime) -> list[dict]:
    return [dict(row) for row in _active_set(app=app, at=at).by_product]


_FLOWS_SQL = """
    SELECT 's' AS kind, (date_trunc('month', start_at AT TIME ZONE 'UTC'))::date AS month, sum(mrr) AS mrr
    FROM revenue_subscription WHERE application_id = %s{org} GROUP BY 2
    UNION ALL
    SELECT 'e', (date_trunc('month', end_at AT TIME ZONE 'UTC'))::date, sum(mrr)
    FROM revenue_subscription WHERE application_id = %s AND end_at IS NOT NULL{org} GROUP BY 2
"""


def _monthly_flows(*, app: Application, org_id: str | None) -> tuple[dict[date, Decimal], dict[date, Decimal]]:
    """MRR started and ended per calendar month (the app's cached per snapshot; an org's from its rows)."""
    if org_id is None:
        key = snapshots.snapshot_key(app.id)
        if key is not None and (hit := snapshots.cached(app.id, key, "flows", _flows_decode)) is not None:
            return hit
        key, rows = snapshots.with_snapshot(app.id, _FLOWS_SQL.format(org=""), [app.id, app.id])
    else:
        key = None
        rows = _rows(_FLOWS_SQL.format(org=" AND external_org_id = %s"), [app.id, org_id, app.id, org_id])
    started: dict[date, Decimal] = defaultdict(Decimal)
    ended: dict[date, Decimal] = defaultdict(Decimal)
    for kind, month, total in rows:
        (started if kind == "s" else ended)[month] += Decimal(total)
    flows = (dict(started), dict(ended))
    if key is not None:
        snapshots.store(app.id, key, "flows", flows)
    return flows


def mrr_trend(*, app: Application, months: int, now: datetime | None = None, org_id: str | None = None) -> list[dict]:
    """MRR at the end of each of the last `months` calendar months, oldest first, this month (now) last.

    MRR at a month boundary B = Σ mrr started before B - Σ mrr ended before B (an ended subscription
    started before it ended), from the MRR started and ended per month (two grouped scans).
    """
    now = now or timezone.now()
    first = add_months(now.date(), -(months - 1))
    started, ended = _monthly_flows(app=app, org_id=org_id)

    def at_boundary(boundary: date) -> Decimal:
        return sum((v for m, v in started.items() if m < boundary), ZERO) - sum(
            (v for m, v in ended.items() if m < boundary), ZERO
        )

    current = date(now.year, now.month, 1)
    values: list[tuple[date, Decimal]] = []
    month = first
    while month <= current:
        if month == current:
            mrr = _active_set(app=app, at=now).mrr
            value = sum(mrr.values(), ZERO) if org_id is None else mrr.get(org_id, ZERO)
        else:
            value = at_boundary(add_months(month, 1))
        values.append((month, value))
        month = add_months(month, 1)
    previous = at_boundary(first)
    out = []
    for month, value in values:
        change = value - previous
        out.append(
            {
                "month": f"{month:%Y-%m}",
                "mrr": money(value),
                "change": money(change),
                "change_pct": percent(change, previous),
            }
        )
        previous = value
    return out


def concentration(paying: dict[str, Decimal]) -> dict[str, float | None]:
    """Share of MRR held by the top 1, 5 and 10 orgs (percent)."""
    ranked = heapq.nlargest(10, paying.values())
    total = sum(paying.values(), ZERO)
    return {f"top{n}": percent(sum(ranked[:n], ZERO), total) for n in (1, 5, 10)}


def _first_paid(*, app: Application) -> tuple[snapshots.SnapshotKey | None, dict[str, datetime]]:
    """(snapshot key, each org's first start of a subscription with MRR > 0), cached per snapshot."""
    key = snapshots.snapshot_key(app.id)
    if key is not None and (hit := snapshots.cached(app.id, key, "first_paid", _first_paid_decode)) is not None:
        return key, hit
    key, rows = snapshots.with_snapshot(
        app.id,
        "SELECT external_org_id, min(start_at) FROM revenue_subscription"
        " WHERE application_id = %s AND mrr > 0 GROUP BY 1",
        [app.id],
    )
    first_paid = dict(rows)
    if key is not None:
        snapshots.store(app.id, key, "first_paid", first_paid)
    return key, first_paid


# --- What an import writes for its snapshot's readers (revenue/snapshots.py) --------------------------
#
# The same definitions as the SQL above, over the rows the import validated (the import has them in
# memory, and a scan here would read the rows it just deleted): tests/revenue/test_snapshot_parts.py
# checks that each part equals what a reader computes from the table.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _flows_decode(_since: object, _until: object, payload: dict) -> tuple[dict[date, Decimal], dict[date, Decimal]]:
    def months(part: dict[str, int]) -> dict[date, Decimal]:
        return {date.fromisoformat(month): Decimal(cents) * CENT for month, cents in part.items()}

    return months(payload["started"]), months(payload["ended"])


def _first_paid_decode(_since: object, _until: object, payload: dict[str, int]) -> dict[str, datetime]:
    return {org: _EPOCH + timedelta(microseconds=us) for org, us in payload.items()}


def _span(starts: list[datetime], ends: list[datetime], at: datetime) -> tuple[datetime | None, datetime | None]:
    """From the last start or end at or before `at` to the first after it (both lists sorted), as
    `_ACTIVE_SET_SQL` reads it."""
    i, j = bisect.bisect_right(starts, at), bisect.bisect_right(ends, at)
    before = [d for d in (starts[i - 1] if i else None, ends[j - 1] if j else None) if d is not None]
    after = [d for d in (starts[i] if i < len(starts) else None, ends[j] if j < len(ends) else None) if d is not None]
    return (max(before) if before else None), (min(after) if after else None)


def snapshot_parts(*, rows: list[dict], now: datetime) -> list[snapshots.Part]:
    """The parts a new snapshot's first reads need: the sets active now, just before this month and a
    year ago (movements, retention, every answer), the monthly flows (trend), the first paid starts.

    `rows` are the import's (instants in UTC, `mrr` to the cent).
    """
    subs = [(r["start_at"], r["end_at"], r["external_org_id"], r["product_code"], r["mrr"]) for r in rows]
    starts = sorted(sub[0] for sub in subs)
    ends = sorted(sub[1] for sub in subs if sub[1] is not None)
    parts: list[snapshots.Part] = []
    for at in sorted({now, month_start(now.date()) - EPSILON, months_back(now, 12)}):
        since, until = _span(starts, ends, at)
        if any(part[1] == since and part[2] == until for part in parts):
            continue  # the same set as an earlier instant's
        active = [
            (org, product, mrr) for start, end, org, product, mrr in subs if start <= at and (end is None or at < end)
        ]
        parts.append(("active", since, until, _active_set_encode(_active_set_build(None, since, until, active))))
    started: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    ended: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    first_paid: dict[str, datetime] = {}
    for start, end, org, _, mrr in subs:
        started[start.year, start.month] += mrr
        if end is not None:
            ended[end.year, end.month] += mrr
        if mrr > 0 and (org not in first_paid or start < first_paid[org]):
            first_paid[org] = start
    flows = {
        "started": {f"{y:04d}-{m:02d}-01": int(total * 100) for (y, m), total in started.items()},
        "ended": {f"{y:04d}-{m:02d}-01": int(total * 100) for (y, m), total in ended.items()},
    }
    parts.append(("flows", None, None, flows))
    micros = {org: (start - _EPOCH) // timedelta(microseconds=1) for org, start in first_paid.items()}
    parts.append(("first_paid", None, None, micros))
    return parts


def _derived(
    keys: list[snapshots.SnapshotKey | None], holder: ActiveSet, memo: Hashable, compute: Callable[[], dict]
) -> dict:
    """`compute()`, kept on `holder` when its inputs are all of one snapshot (a copy: callers own it)."""
    if len(set(keys)) != 1 or None in keys:  # an import committed between the reads (no consistent read)
        return compute()
    if memo not in holder.derived:
        holder.derived[memo] = compute()
    return copy.deepcopy(holder.derived[memo])


MOVEMENTS = ("new", "reactivation", "expansion", "contraction", "churned")


def movements(*, app: Application, month: date, now: datetime | None = None) -> dict:
    """Each org's MRR at the month's start against its end (now for the current month), classified.

    Kept per snapshot with the sets at both ends (it cannot change while they hold).
    """
    now = now or timezone.now()
    start = month_start(month)
    if start > now:  # a month not begun: nothing moved yet
        zero = {"mrr": money(ZERO), "orgs": 0}
        return {"month": f"{month:%Y-%m}", **{kind: dict(zero) for kind in MOVEMENTS}, "net_new": money(ZERO)}
    before = _active_set(app=app, at=start - EPSILON)
    after = _active_set(app=app, at=month_end_instant(month, now))
    paid_key, first_paid = _first_paid(app=app)
    memo = ("movements", month, before.since, before.until)
    compute = partial(_movements, month, before.mrr, after.mrr, first_paid)
    return _derived([before.key, paid_key, after.key], after, memo, compute)


def _movements(
    month: date, before: dict[str, Decimal], after: dict[str, Decimal], first_paid: dict[str, datetime]
) -> dict:
    start = month_start(month)
    paid_before = {org for org, first in first_paid.items() if first < start}
    amounts: dict[str, Decimal] = dict.fromkeys(MOVEMENTS, ZERO)
    counts: dict[str, int] = dict.fromkeys(MOVEMENTS, 0)
    for org in set(before) | set(after):
        b, a = before.get(org, ZERO), after.get(org, ZERO)
        if b == 0 and a > 0:
            kind = "reactivation" if org in paid_before else "new"
        elif b > 0 and a == 0:
            kind = "churned"
        elif a > b:
            kind = "expansion"
        elif a < b:
            kind = "contraction"
        else:
            continue
        amounts[kind] += abs(a - b)
        counts[kind] += 1
    net = amounts["new"] + amounts["reactivation"] + amounts["expansion"] - amounts["contraction"] - amounts["churned"]
    return {
        "month": f"{month:%Y-%m}",
        **{kind: {"mrr": money(amounts[kind]), "orgs": counts[kind]} for kind in MOVEMENTS},
        "net_new": money(net),
    }


def retention(*, app: Application, now: datetime | None = None, months: int = 12) -> dict[str, float | None]:
    """NRR and GRR over `months`: the cohort paying then, its MRR now (GRR: each org capped at then)."""
    now = now or timezone.now()
    then_set = _active_set(app=app, at=months_back(now, months))
    current_set = _active_set(app=app, at=now)
    memo = ("retention", then_set.since, then_set.until)
    compute = partial(_retention, then_set.mrr, current_set.mrr)
    return _derived([then_set.key, current_set.key], current_set, memo, compute)


def _retention(then_mrr: dict[str, Decimal], current: dict[str, Decimal]) -> dict[str, float | None]:
    then = {org: mrr for org, mrr in then_mrr.items() if mrr > 0}
    base = sum(then.values(), ZERO)
    if not base:
        return {"nrr": None, "grr": None}
    net = sum((current.get(org, ZERO) for org in then), ZERO)
    gross = sum((min(current.get(org, ZERO), mrr) for org, mrr in then.items()), ZERO)
    return {"nrr": percent(net, base), "grr": percent(gross, base)}


def churn_dates(*, app: Application, now: datetime | None = None) -> dict[str, date]:
    """Orgs that paid and pay nothing now: the UTC day their MRR went to 0 (their last paid end).

    An org whose every subscription with MRR > 0 has ended by `now` stopped paying at the latest of
    those ends (none of them runs past it); an org paying now, or with a paid subscription still to
    start, has not churned.
    """
    now = now or timezone.now()
    rows = _rows(
        "SELECT external_org_id, max(end_at) FROM revenue_subscription WHERE application_id = %s AND mrr > 0"
        " GROUP BY 1 HAVING bool_and(end_at IS NOT NULL AND end_at <= %s)",
        [app.id, now],
    )
    return {org: ended.astimezone(UTC).date() for org, ended in rows}


# --- Organizations, subscriptions, imports, notes, tags -------------------------------------------------


def display_names(*, app: Application, org_ids: list[str] | None = None) -> dict[str, str]:
    orgs = CustomerOrg.objects.filter(application=app).exclude(display_name="")
    if org_ids is not None:
        orgs = orgs.filter(external_org_id__in=org_ids)
    return dict(orgs.values_list("external_org_id", "display_name"))


def has_revenue_data(*, app: Application) -> bool:
    return Subscription.objects.filter(application=app).exists()


def org_subscriptions(*, app: Application, customer_org_id: str, now: datetime | None = None) -> list[dict]:
    now = now or timezone.now()
    return [
        {
            "subscription_id": s.subscription_id or None,
            "product_code": s.product_code,
            "mrr": money(s.mrr),
            "original_mrr": money(s.original_mrr),
            "original_currency": s.original_currency,
            "start_at": s.start_at,
            "end_at": s.end_at,
            "active": s.start_at <= now and (s.end_at is None or now < s.end_at),
        }
        for s in Subscription.objects.filter(application=app, external_org_id=customer_org_id).order_by(
            "-start_at", "product_code"
        )
    ]


def imports_list(*, app: Application, limit: int = 20) -> list[Import]:
    return list(Import.objects.filter(application=app).select_related("user")[:limit])


def notes_list(*, app: Application, customer_org_id: str) -> list[dict]:
    return [
        {
            "id": n.pk,
            "author": n.author.get_username() if n.author else None,
            "author_id": n.author_id,
            "created_at": n.created_at,
            "text": n.text,
        }
        for n in Note.objects.filter(application=app, customer_org_id=customer_org_id).select_related("author")[:200]
    ]


def tags_of(*, app: Application, org_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for org, label in (
        Tag.objects.filter(application=app, customer_org_id__in=org_ids)
        .order_by("label")
        .values_list("customer_org_id", "label")
    ):
        out[org].append(label)
    return dict(out)


def org_ids_tagged(*, app: Application, label: str) -> list[str]:
    return list(
        Tag.objects.filter(application=app, label=label.strip().lower()).values_list("customer_org_id", flat=True)
    )
