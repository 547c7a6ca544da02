"""Organization health and signals: a scan over the rollups, per app, debounced after folds and daily.

The scan reads only rollups (OrgDay, EventDay, PageDay, SessionDay) for the last 60 days, so its cost
does not grow with raw volume. Scores age without new events because the daily scan recomputes them.

Health score 0-100 = weighted mean of components in [0, 1] (weights: ANALYTICS_HEALTH_WEIGHTS):
- recency: 1 - days since last seen / ANALYTICS_HEALTH_RECENCY_DAYS, floored at 0;
- trend: events of the last 30 days / events of the 30 days before, capped at 1 (1 when there were
  none before and some now, 0 when none in either);
- breadth: features the org used in the last 30 days / features the app defines (left out, and the
  other weights rescaled, when the app defines none);
- depth: half min(1, active users in 30 days / ANALYTICS_HEALTH_DEPTH_USERS), half
  min(1, sessions per active user / ANALYTICS_HEALTH_DEPTH_SESSIONS_PER_USER).
Buckets: `inactive` when no event in the last 30 days, else `healthy` ≥ HEALTHY_MIN (70),
`watch` ≥ WATCH_MIN (40), `at_risk` below.

Signals (days are UTC, "today" included in "the last N days"):
- usage_drop: events of the last 30 days < 70 % of the 30 before, with ≥ 10 before;
- inactive: no event in the last 14 days, at least one 15-44 days ago;
- expansion_candidate: last 30 days ≥ 130 % of the 30 before (with some before), and health ≥ 70.
A signal row is active while `cleared_at` is null. A dismissed signal stays dismissed while it stays
active; once it clears, the next time it is raised it is a new activation (not dismissed).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from pyroaring import BitMap

from apps_registry.models import Application

from . import bitmaps
from .models import ALL_ENVIRONMENTS, Feature, Organization, OrgSignal, Source

HEALTH_DOC = __doc__

USAGE_DROP_RATIO = 0.7
USAGE_DROP_MIN_BEFORE = 10
EXPANSION_RATIO = 1.3
EXPANSION_HEALTH_MIN = 70
USAGE_SIGNAL_KINDS = (OrgSignal.Kind.USAGE_DROP, OrgSignal.Kind.INACTIVE, OrgSignal.Kind.EXPANSION_CANDIDATE)


def _rows(sql: str, params: list | dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _features_used(app: Application, since: date, until: date) -> dict[int, int]:
    """Number of the app's features each org (dense id) used in the window."""
    from .selectors import feature_sets  # one definition of "a feature matches"

    used: dict[int, int] = defaultdict(int)
    for feature in Feature.objects.filter(application=app):
        _, orgs = feature_sets(
            app=app, feature=feature, date_from=since, date_to=until, environment=None, source=Source.EVENTS
        )
        for org in orgs:
            used[org] += 1
    return used


def health_components(
    *,
    days_since_seen: int,
    last30: int,
    prev30: int,
    features_used: int,
    features_total: int,
    users30: int,
    sessions30: int,
) -> dict[str, float]:
    """Each component in [0, 1]; breadth is absent when the app defines no feature."""
    recency = max(0.0, 1 - days_since_seen / settings.ANALYTICS_HEALTH_RECENCY_DAYS)
    trend = min(1.0, last30 / prev30) if prev30 else float(last30 > 0)
    per_user = sessions30 / users30 if users30 else 0.0
    depth = 0.5 * min(1.0, users30 / settings.ANALYTICS_HEALTH_DEPTH_USERS) + 0.5 * min(
        1.0, per_user / settings.ANALYTICS_HEALTH_DEPTH_SESSIONS_PER_USER
    )
    components = {"recency": recency, "trend": trend, "depth": depth}
    if features_total:
        components["breadth"] = features_used / features_total
    return {k: round(v, 4) for k, v in components.items()}


def health_score(components: dict[str, float]) -> int:
    weights = {k: w for k, w in settings.ANALYTICS_HEALTH_WEIGHTS.items() if k in components}
    total = sum(weights.values())
    if not total:
        return 0
    return round(100 * sum(components[k] * w for k, w in weights.items()) / total)


def health_bucket(score: int, last30: int) -> str:
    if not last30:
        return Organization.Bucket.INACTIVE
    if score >= settings.ANALYTICS_HEALTH_HEALTHY_MIN:
        return Organization.Bucket.HEALTHY
    if score >= settings.ANALYTICS_HEALTH_WATCH_MIN:
        return Organization.Bucket.WATCH
    return Organization.Bucket.AT_RISK


def signals_active(*, last30: int, prev30: int, last14: int, days15_44: int, score: int) -> set[str]:
    active = set()
    if prev30 >= USAGE_DROP_MIN_BEFORE and last30 < USAGE_DROP_RATIO * prev30:
        active.add(OrgSignal.Kind.USAGE_DROP)
    if last14 == 0 and days15_44 >= 1:
        active.add(OrgSignal.Kind.INACTIVE)
    if prev30 > 0 and last30 >= EXPANSION_RATIO * prev30 and score >= EXPANSION_HEALTH_MIN:
        active.add(OrgSignal.Kind.EXPANSION_CANDIDATE)
    return {str(s) for s in active}


def _org_limit_flag(app: Application) -> None:
    """Orgs beyond the company's orgs_max (in order of first appearance) are flagged, still tracked."""
    company = app.company
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE analytics_organization o SET over_limit = r.rn > %s
            FROM (
                SELECT o2.id, row_number() OVER (ORDER BY o2.first_seen, o2.id) AS rn
                FROM analytics_organization o2 JOIN apps_registry_application a ON a.id = o2.application_id
                WHERE a.company_id = %s
            ) r
            WHERE o.id = r.id AND o.over_limit IS DISTINCT FROM (r.rn > %s)
            """,
            [company.orgs_max, company.id, company.orgs_max],
        )


def organizations_scan(*, app: Application, now: datetime | None = None) -> dict[str, int]:
    """Recompute health, buckets and signals of every org of the app. Idempotent."""
    now = now or timezone.now()
    today = now.date()
    start = today - timedelta(days=59)
    per_org = {
        org: (last30, prev30, last14, d15_44)
        for org, last30, prev30, last14, d15_44 in _rows(
            """
            SELECT customer_org_id,
                coalesce(sum(events) FILTER (WHERE day >= %(d29)s), 0),
                coalesce(sum(events) FILTER (WHERE day < %(d29)s), 0),
                coalesce(sum(events) FILTER (WHERE day >= %(d13)s), 0),
                coalesce(sum(events) FILTER (WHERE day BETWEEN %(d44)s AND %(d14)s), 0)
            FROM analytics_orgday
            WHERE application_id = %(app)s AND environment = %(all)s AND day BETWEEN %(start)s AND %(today)s
            GROUP BY 1
            """,
            {
                "d29": today - timedelta(days=29),
                "d13": today - timedelta(days=13),
                "d14": today - timedelta(days=14),
                "d44": today - timedelta(days=44),
                "app": app.id,
                "all": ALL_ENVIRONMENTS,
                "start": start,
                "today": today,
            },
        )
    }
    since30 = today - timedelta(days=29)
    from .selectors import _daily_rows, _union  # the same cached bitmap reads as the API

    rows = _daily_rows(app, ALL_ENVIRONMENTS, Source.EVENTS, since30, today, ("org_users_bm", "org_sessions_bm"))
    org_users = _union([r[5] for r in rows])
    org_sessions = _union([r[6] for r in rows])
    with connection.cursor() as cursor:
        rev = bitmaps.reverse(cursor, app.id, [bitmaps.ORG, bitmaps.ORG_USER, bitmaps.ORG_SESSION])
    dense_of = {key: dense for dense, key in rev[bitmaps.ORG].keys.items()}
    empty = BitMap()

    def users30(org: str) -> int:
        return org_users.intersection_cardinality(rev[bitmaps.ORG_USER].by_org.get(dense_of.get(org, 0), empty))

    def sessions30(org: str) -> int:
        return org_sessions.intersection_cardinality(rev[bitmaps.ORG_SESSION].by_org.get(dense_of.get(org, 0), empty))

    features_total = Feature.objects.filter(application=app).count()
    used = _features_used(app, since30, today) if features_total else {}
    signals = {
        (s.customer_org_id, s.kind): s for s in OrgSignal.objects.filter(application=app, cleared_at__isnull=True)
    }
    counts = {"orgs": 0, "raised": 0, "cleared": 0}
    with transaction.atomic():
        _org_limit_flag(app)
        for org in Organization.objects.filter(application=app).select_for_update():
            last30, prev30, last14, d15_44 = (int(v) for v in per_org.get(org.customer_org_id, (0, 0, 0, 0)))
            components = health_components(
                days_since_seen=max(0, (today - org.last_seen.date()).days),
                last30=last30,
                prev30=prev30,
                features_used=used.get(dense_of.get(org.customer_org_id, 0), 0),
                features_total=features_total,
                users30=users30(org.customer_org_id),
                sessions30=sessions30(org.customer_org_id),
            )
            score = health_score(components)
            org.health_score = score
            org.health_bucket = health_bucket(score, last30)
            org.health_components = components
            org.scanned_at = now
            org.save(update_fields=["health_score", "health_bucket", "health_components", "scanned_at"])
            active = signals_active(last30=last30, prev30=prev30, last14=last14, days15_44=d15_44, score=score)
            for kind in USAGE_SIGNAL_KINDS:  # the revenue kinds are analytics/signals.py's
                current = signals.get((org.customer_org_id, kind))
                if kind in active and current is None:
                    OrgSignal.objects.update_or_create(
                        application=app,
                        customer_org_id=org.customer_org_id,
                        kind=kind,
                        defaults={"active_since": now, "cleared_at": None, "dismissed_at": None},
                    )
                    counts["raised"] += 1
                elif kind not in active and current is not None:
                    OrgSignal.objects.filter(pk=current.pk).update(cleared_at=now)
                    counts["cleared"] += 1
            counts["orgs"] += 1
        # issue 20: the revenue-aware signals and `signal.raised` for this scan's activations (analytics/signals.py)
        from .signals import revenue_signals_scan

        counts.update(revenue_signals_scan(app=app, now=now))
    return counts
