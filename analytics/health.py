"""Organization health: a score that lets a collapse or a silence dominate, explains itself, keeps its history.

The scan reads only rollups (OrgDay, DailyTotal, NameDay, PathDay) of the last 60 days, so its cost does
not grow with raw volume. Scores age without new events because the daily scan recomputes them. Days
are UTC days; "the last 30 days" include today.

Components, each in [0, 1] (shown on every org, `new` ones included):
- recency: 1 - days since the last event / recency_days (30), floored at 0;
- trend: events of the last 30 days / events of the 30 days before, capped at 1 (1 when there were
  none before and some now, 0 when none in either);
- breadth: counted features the org used in the last 30 days / counted features (all the app's
  features unless the model names some; left out, the other weights rescaled, when there are none);
- depth: half min(1, active users in 30 days / depth_users (5)), half
  min(1, sessions per active user / depth_sessions_per_user (4)).

Combination: base = round(100 x weighted mean of the components) (weights 0.3 recency, 0.3 trend,
0.2 breadth, 0.2 depth), then caps and a floor, so a component that stays high cannot hide one that
collapsed:
- usage down >= drop_at_risk_pct (70 %) with >= 10 events before: capped at watch_min - 1 (at_risk);
- usage down >= drop_watch_pct (50 %): capped at healthy_min - 1 (at most watch);
- no event for silence_days (14) or more after regular use (active on >= regular_days (3) days of
  the 60): capped at watch_min - 1 (at_risk); without regular use: capped at healthy_min - 1;
- floor: an org neither silent that long nor down >= drop_watch_pct scores at least watch_min, so
  `at_risk` always has a cause a person can act on.
Buckets, first match wins: `new` (first seen < new_days (14) ago, unless already active on
new_exit_active_days (10) days; score null, components shown, no verdict), `inactive` (no event for
inactive_days (30)), `healthy` (score >= healthy_min, 70), `watch` (>= watch_min, 40), `at_risk`.

Reasons: each score carries its reasons, worst first, as {code, text}: new, inactive, silent,
usage_drop, moved (the bucket changed in the last 90 days), usage_down, breadth, depth, then the
good news (usage_up, steady, broad, deep).

Signals: usage_drop (>= 10 events before, some now, < 70 % of before; detail before/after/change);
inactive (no event for silence_days or more, however long, once per silence; detail days);
expansion_candidate (>= 130 % of the month before, with some before, and healthy; detail
before/after/change). A signal row is active while `cleared_at` is null; a dismissed signal stays
dismissed while it stays active, and each dismissal is kept (who, when, reason).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from pyroaring import BitMap

from apps_registry.models import Application
from revenue.selectors import churn_dates, has_revenue_data

from . import bitmaps
from .models import ALL_ENVIRONMENTS, Feature, HealthModel, Organization, OrgSignal, Source

HEALTH_DOC = __doc__

USAGE_DROP_RATIO = 0.7
USAGE_DROP_MIN_BEFORE = 10
EXPANSION_RATIO = 1.3
MOVED_LOOKBACK_DAYS = 90
# The signals this scan raises and clears; other kinds (revenue's) are left alone.
HEALTH_SIGNALS = (OrgSignal.Kind.USAGE_DROP, OrgSignal.Kind.INACTIVE, OrgSignal.Kind.EXPANSION_CANDIDATE)
USAGE_SIGNAL_KINDS = HEALTH_SIGNALS  # the name issue 20's analytics/signals.py knows them by
# Bad news and good news look different on the pages and carry `tone` in the API.
SIGNAL_TONE = {"usage_drop": "bad", "inactive": "bad", "expansion_candidate": "good"}
BUCKET_RANK = {"healthy": 0, "new": 0, "watch": 1, "at_risk": 2, "inactive": 3}
COMPONENTS = ("recency", "trend", "breadth", "depth")


def signal_tone(kind: str) -> str:
    return SIGNAL_TONE.get(kind, "bad")


# --- The model: defaults from settings, per-app overrides ------------------------------------------


def model_defaults() -> dict[str, Any]:
    """The model every app starts with (settings; documented in .env.example)."""
    return {
        "weights": {k: float(settings.ANALYTICS_HEALTH_WEIGHTS.get(k, 0)) for k in COMPONENTS},
        "healthy_min": settings.ANALYTICS_HEALTH_HEALTHY_MIN,
        "watch_min": settings.ANALYTICS_HEALTH_WATCH_MIN,
        "drop_watch_pct": settings.ANALYTICS_HEALTH_DROP_WATCH_PCT,
        "drop_at_risk_pct": settings.ANALYTICS_HEALTH_DROP_AT_RISK_PCT,
        "silence_days": settings.ANALYTICS_HEALTH_SILENCE_DAYS,
        "inactive_days": settings.ANALYTICS_HEALTH_INACTIVE_DAYS,
        "regular_days": settings.ANALYTICS_HEALTH_REGULAR_DAYS,
        "new_days": settings.ANALYTICS_HEALTH_NEW_DAYS,
        "new_exit_active_days": settings.ANALYTICS_HEALTH_NEW_EXIT_ACTIVE_DAYS,
        "recency_days": settings.ANALYTICS_HEALTH_RECENCY_DAYS,
        "depth_users": settings.ANALYTICS_HEALTH_DEPTH_USERS,
        "depth_sessions_per_user": settings.ANALYTICS_HEALTH_DEPTH_SESSIONS_PER_USER,
        "features": None,
    }


def model_merge(config: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overridden by an app's stored config (keys it leaves out keep the defaults)."""
    model = model_defaults()
    for key, value in (config or {}).items():
        if key == "weights" and isinstance(value, dict):
            model["weights"] = {**model["weights"], **{k: float(v) for k, v in value.items() if k in COMPONENTS}}
        elif key in model:
            model[key] = value
    return model


def model_get(app: Application) -> dict[str, Any]:
    stored = HealthModel.objects.filter(application=app).values_list("config", flat=True).first()
    return model_merge(stored)


# --- One org's facts and verdict (pure) ----------------------------------------------------------


@dataclass
class Facts:
    """What the model needs to know of one org as of a day."""

    org: str
    days_since_first: int
    days_since_seen: int
    last30: int
    prev30: int
    active_days: int
    users30: int
    sessions30: int
    features_used: int
    features_total: int


@dataclass
class Verdict:
    score: int | None
    raw_score: int
    bucket: str
    components: dict[str, float]
    reasons: list[dict] = field(default_factory=list)
    signals: dict[str, dict] = field(default_factory=dict)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _change_text(last30: int, prev30: int) -> str:
    pct = round(100 * (last30 - prev30) / prev30)
    sign = "\u2212" if pct < 0 else "+"  # a real minus sign, as people print it
    return f"events {sign}{abs(pct)} % vs the previous 30 days ({last30:,} vs {prev30:,})"


def health_components(facts: Facts, model: dict[str, Any]) -> dict[str, float]:
    """Each component in [0, 1]; breadth is absent when no feature counts."""
    recency = max(0.0, 1 - facts.days_since_seen / max(1, model["recency_days"]))
    trend = min(1.0, facts.last30 / facts.prev30) if facts.prev30 else float(facts.last30 > 0)
    per_user = facts.sessions30 / facts.users30 if facts.users30 else 0.0
    depth = 0.5 * min(1.0, facts.users30 / max(1, model["depth_users"])) + 0.5 * min(
        1.0, per_user / max(1, model["depth_sessions_per_user"])
    )
    components = {"recency": recency, "trend": trend, "depth": depth}
    if facts.features_total:
        components["breadth"] = min(1.0, facts.features_used / facts.features_total)
    return {k: round(v, 4) for k, v in components.items()}


def health_evaluate(facts: Facts, model: dict[str, Any]) -> Verdict:
    """Score, bucket, reasons (worst first) and signals of one org under one model."""
    components = health_components(facts, model)
    weights = {k: float(w) for k, w in model["weights"].items() if k in components}
    total = sum(weights.values())
    base = round(100 * sum(components[k] * w for k, w in weights.items()) / total) if total else 0
    healthy_min, watch_min = int(model["healthy_min"]), int(model["watch_min"])
    change = (facts.last30 - facts.prev30) / facts.prev30 if facts.prev30 else None
    counted_drop = change is not None and facts.prev30 >= USAGE_DROP_MIN_BEFORE
    drop_pct = -100 * change if counted_drop and change is not None else 0.0
    silent = facts.days_since_seen >= int(model["silence_days"])
    regular = facts.active_days >= int(model["regular_days"])
    reasons: list[tuple[int, str, str]] = []  # (severity, code, text)
    score = base
    if drop_pct >= float(model["drop_at_risk_pct"]):
        score = min(score, watch_min - 1)
        reasons.append((85, "usage_drop", _change_text(facts.last30, facts.prev30)))
    elif drop_pct >= float(model["drop_watch_pct"]):
        score = min(score, healthy_min - 1)
        reasons.append((75, "usage_drop", _change_text(facts.last30, facts.prev30)))
    elif change is not None and change <= -0.2 and facts.last30:
        reasons.append((40, "usage_down", _change_text(facts.last30, facts.prev30)))
    elif change is not None and change >= 0.2:
        reasons.append((8, "usage_up", _change_text(facts.last30, facts.prev30)))
    elif change is not None:
        reasons.append(
            (6, "steady", f"steady use: {_plural(facts.last30, 'event')} in 30 days ({facts.prev30:,} before)")
        )
    elif facts.last30:
        reasons.append((7, "usage_up", f"{_plural(facts.last30, 'event')} in the last 30 days, none in the 30 before"))
    if silent:  # after regular use at_risk; an org that was never regular is at most watch
        score = min(score, (watch_min if regular else healthy_min) - 1)
    if not silent and drop_pct < float(model["drop_watch_pct"]):
        score = max(score, watch_min)
    inactive = facts.days_since_seen >= int(model["inactive_days"])
    if silent:
        code = "inactive" if inactive else "silent"
        reasons.append((95 if inactive else 90, code, f"no activity for {_plural(facts.days_since_seen, 'day')}"))
        # A silent org's month-over-month change restates the silence: keep it below.
    if "breadth" in components:
        text = f"uses {facts.features_used} of {_plural(facts.features_total, 'feature')}"
        reasons.append((50, "breadth", text) if components["breadth"] < 0.5 else (5, "broad", text))
    per_user = facts.sessions30 / facts.users30 if facts.users30 else 0.0
    depth_text = f"{_plural(facts.users30, 'active user')} in 30 days, {per_user:.1f} sessions each"
    reasons.append((45, "depth", depth_text) if components["depth"] < 0.5 else (4, "deep", depth_text))
    is_new = facts.days_since_first < int(model["new_days"]) and facts.active_days < int(model["new_exit_active_days"])
    if is_new:
        bucket = Organization.Bucket.NEW
        when = "today" if facts.days_since_first == 0 else f"{_plural(facts.days_since_first, 'day')} ago"
        reasons.append((100, "new", f"new: first seen {when}; a verdict from day {model['new_days']}"))
    elif inactive:
        bucket = Organization.Bucket.INACTIVE
    elif score >= healthy_min:
        bucket = Organization.Bucket.HEALTHY
    elif score >= watch_min:
        bucket = Organization.Bucket.WATCH
    else:
        bucket = Organization.Bucket.AT_RISK
    signals: dict[str, dict] = {}
    if counted_drop and facts.last30 and facts.last30 < USAGE_DROP_RATIO * facts.prev30:
        signals[OrgSignal.Kind.USAGE_DROP] = {
            "before": facts.prev30,
            "after": facts.last30,
            "change": round(change or 0, 2),
        }
    if silent:
        signals[OrgSignal.Kind.INACTIVE] = {"days": facts.days_since_seen}
    if facts.prev30 and facts.last30 >= EXPANSION_RATIO * facts.prev30 and bucket == Organization.Bucket.HEALTHY:
        signals[OrgSignal.Kind.EXPANSION_CANDIDATE] = {
            "before": facts.prev30,
            "after": facts.last30,
            "change": round(change or 0, 2),
        }
    reasons.sort(key=lambda r: -r[0])
    return Verdict(
        score=None if is_new else score,
        raw_score=score,
        bucket=str(bucket),
        components=components,
        reasons=[{"code": code, "text": text, "_severity": sev} for sev, code, text in reasons],
        signals={str(k): v for k, v in signals.items()},
    )


# --- Facts from the rollups ----------------------------------------------------------------------


def _rows(sql: str, params: list | dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class _AppContext:
    """App-wide reads for one as-of day, shared by every chunk of a scan (bitmaps, features)."""

    def __init__(self, app: Application, model: dict[str, Any], as_of: date) -> None:
        from .selectors import _daily_rows, _union, feature_sets  # the same reads as the API

        since30 = as_of - timedelta(days=29)
        rows = _daily_rows(app, ALL_ENVIRONMENTS, Source.EVENTS, since30, as_of, ("org_users_bm", "org_sessions_bm"))
        self.org_users = _union([r[5] for r in rows])
        self.org_sessions = _union([r[6] for r in rows])
        with connection.cursor() as cursor:
            self.rev = bitmaps.reverse(cursor, app.id, [bitmaps.ORG, bitmaps.ORG_USER, bitmaps.ORG_SESSION])
        self.dense_of = {key: dense for dense, key in self.rev[bitmaps.ORG].keys.items()}
        features = list(Feature.objects.filter(application=app))
        if model.get("features") is not None:
            wanted = set(model["features"])
            features = [f for f in features if f.name in wanted]
        self.features_total = len(features)
        self.used: dict[int, int] = defaultdict(int)
        for feature in features:
            _, orgs = feature_sets(
                app=app, feature=feature, date_from=since30, date_to=as_of, environment=None, source=Source.EVENTS
            )
            for org in orgs:
                self.used[org] += 1

    def users30(self, org: str) -> int:
        return self.org_users.intersection_cardinality(
            self.rev[bitmaps.ORG_USER].by_org.get(self.dense_of.get(org, 0), BitMap())
        )

    def sessions30(self, org: str) -> int:
        return self.org_sessions.intersection_cardinality(
            self.rev[bitmaps.ORG_SESSION].by_org.get(self.dense_of.get(org, 0), BitMap())
        )


def _facts(
    app: Application, orgs: list[tuple[str, datetime, datetime]], as_of: date, ctx: _AppContext, live: bool
) -> dict[str, Facts]:
    """Facts of these orgs (id, first_seen, last_seen) as of a day; `live`: as of now (last_seen is exact)."""
    ids = [o[0] for o in orgs]
    per_org = {
        org: (int(last30), int(prev30), int(active), last_day)
        for org, last30, prev30, active, last_day in _rows(
            """
            SELECT customer_org_id,
                coalesce(sum(events) FILTER (WHERE day >= %(d29)s), 0),
                coalesce(sum(events) FILTER (WHERE day < %(d29)s), 0),
                count(*) FILTER (WHERE events > 0),
                max(day)
            FROM analytics_orgday
            WHERE application_id = %(app)s AND environment = %(all)s AND customer_org_id = ANY(%(ids)s)
                AND day BETWEEN %(start)s AND %(asof)s
            GROUP BY 1
            """,
            {
                "d29": as_of - timedelta(days=29),
                "app": app.id,
                "all": ALL_ENVIRONMENTS,
                "ids": ids,
                "start": as_of - timedelta(days=59),
                "asof": as_of,
            },
        )
    }
    older: dict[str, date] = {}
    if not live:
        missing = [o for o in ids if o not in per_org]
        if missing:
            older = dict(
                _rows(
                    "SELECT customer_org_id, max(day) FROM analytics_orgday WHERE application_id = %s"
                    " AND environment = %s AND customer_org_id = ANY(%s) AND day <= %s GROUP BY 1",
                    [app.id, ALL_ENVIRONMENTS, missing, as_of],
                )
            )
    facts = {}
    for org, first_seen, last_seen in orgs:
        if first_seen.date() > as_of:
            continue  # did not exist yet
        last30, prev30, active, last_day = per_org.get(org, (0, 0, 0, None))
        seen = last_seen.date() if live else last_day or older.get(org) or first_seen.date()
        dense = ctx.dense_of.get(org, 0)
        facts[org] = Facts(
            org=org,
            days_since_first=max(0, (as_of - first_seen.date()).days),
            days_since_seen=max(0, (as_of - seen).days),
            last30=last30,
            prev30=prev30,
            active_days=active,
            users30=ctx.users30(org),
            sessions30=ctx.sessions30(org),
            features_used=ctx.used.get(dense, 0) if dense else 0,
            features_total=ctx.features_total,
        )
    return facts


def health_compute(
    *, app: Application, model: dict[str, Any], as_of: date, org_ids: list[str] | None = None
) -> dict[str, Verdict]:
    """Verdicts of the app's orgs (or these) as of a day under a model, written nowhere (preview, backtest)."""
    qs = Organization.objects.filter(application=app)
    if org_ids is not None:
        qs = qs.filter(customer_org_id__in=org_ids)
    orgs = list(qs.values_list("customer_org_id", "first_seen", "last_seen"))
    if not orgs:
        return {}
    ctx = _AppContext(app, model, as_of)
    live = as_of >= timezone.now().date()
    return {org: health_evaluate(f, model) for org, f in _facts(app, orgs, as_of, ctx, live).items()}


# --- The scan: writes scores, reasons, history and signals -----------------------------------------


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


def _moves(app: Application, verdicts: dict[str, Verdict], today: date) -> dict[str, tuple[str, date]]:
    """(previous bucket, day of the move) of orgs whose bucket changed in the last 90 days of history."""
    if not verdicts:
        return {}
    orgs = list(verdicts)
    rows = _rows(
        """
        SELECT c.org, x.day, x.bucket,
            (SELECT min(h2.day) FROM analytics_orghealthday h2 WHERE h2.application_id = %(app)s
                AND h2.customer_org_id = c.org AND h2.day > x.day AND h2.day < %(today)s)
        FROM unnest(%(orgs)s::text[], %(buckets)s::text[]) AS c(org, bucket)
        CROSS JOIN LATERAL (
            SELECT h.day, h.bucket FROM analytics_orghealthday h
            WHERE h.application_id = %(app)s AND h.customer_org_id = c.org AND h.day < %(today)s
                AND h.day >= %(since)s AND h.bucket <> c.bucket
            ORDER BY h.day DESC LIMIT 1
        ) x
        """,
        {
            "app": app.id,
            "orgs": orgs,
            "buckets": [verdicts[o].bucket for o in orgs],
            "today": today,
            "since": today - timedelta(days=MOVED_LOOKBACK_DAYS),
        },
    )
    return {org: (previous, moved_on or today) for org, _, previous, moved_on in rows}


def _add_move_reasons(verdicts: dict[str, Verdict], moves: dict[str, tuple[str, date]]) -> None:
    for org, (previous, moved_on) in moves.items():
        verdict = verdicts[org]
        worse = BUCKET_RANK.get(verdict.bucket, 0) > BUCKET_RANK.get(previous, 0)
        verdict.reasons.append(
            {
                "code": "moved",
                "text": f"moved to {verdict.bucket} on {moved_on.isoformat()} (from {previous})",
                "_severity": 70 if worse else 9,
            }
        )
        verdict.reasons.sort(key=lambda r: -r["_severity"])


def _public_reasons(verdict: Verdict) -> list[dict]:
    return [{"code": r["code"], "text": r["text"]} for r in verdict.reasons]


def _write(app: Application, orgs: list[tuple[int, str]], verdicts: dict[str, Verdict], now: datetime) -> None:
    """Scores, reasons, today's history row of each org: one statement each, whatever the chunk size."""
    ids, scores, buckets, components, reasons, names = [], [], [], [], [], []
    for pk, org in orgs:
        v = verdicts.get(org)
        if v is None:
            continue
        ids.append(pk)
        names.append(org)
        scores.append(v.score)
        buckets.append(v.bucket)
        components.append(json.dumps(v.components))
        reasons.append(json.dumps(_public_reasons(v)))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE analytics_organization o SET health_score = u.score, health_bucket = u.bucket,
                health_components = u.components::jsonb, health_reasons = u.reasons::jsonb, scanned_at = %s
            FROM unnest(%s::bigint[], %s::smallint[], %s::text[], %s::text[], %s::text[])
                AS u(id, score, bucket, components, reasons)
            WHERE o.id = u.id
            """,
            [now, ids, scores, buckets, components, reasons],
        )
        cursor.execute(
            """
            INSERT INTO analytics_orghealthday (application_id, customer_org_id, day, score, bucket)
            SELECT %s, u.org, %s, u.score, u.bucket FROM unnest(%s::text[], %s::smallint[], %s::text[])
                AS u(org, score, bucket)
            ON CONFLICT (application_id, customer_org_id, day)
            DO UPDATE SET score = EXCLUDED.score, bucket = EXCLUDED.bucket
            """,
            [app.id, now.date(), names, scores, buckets],
        )


def _signals_write(app: Application, verdicts: dict[str, Verdict], now: datetime) -> dict[str, int]:
    """Raise, clear and update the magnitude of this scan's signals (only the kinds health owns)."""
    orgs = list(verdicts)
    current = {
        (s.customer_org_id, s.kind): s
        for s in OrgSignal.objects.filter(
            application=app, customer_org_id__in=orgs, kind__in=HEALTH_SIGNALS, cleared_at__isnull=True
        )
    }
    raise_rows: list[tuple[str, str, str]] = []
    update_rows: list[tuple[int, str]] = []
    clear_ids: list[int] = []
    for org, verdict in verdicts.items():
        for kind in HEALTH_SIGNALS:
            existing = current.get((org, str(kind)))
            detail = verdict.signals.get(str(kind))
            if detail is not None and existing is None:
                raise_rows.append((org, str(kind), json.dumps(detail)))
            elif detail is not None and existing is not None and existing.detail != detail:
                update_rows.append((existing.pk, json.dumps(detail)))
            elif detail is None and existing is not None:
                clear_ids.append(existing.pk)
    with connection.cursor() as cursor:
        if raise_rows:
            cursor.execute(
                """
                INSERT INTO analytics_orgsignal (application_id, customer_org_id, kind, active_since, cleared_at,
                    dismissed_at, detail)
                SELECT %s, u.org, u.kind, %s, NULL, NULL, u.detail::jsonb
                FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(org, kind, detail)
                ON CONFLICT (application_id, customer_org_id, kind) DO UPDATE SET active_since = EXCLUDED.active_since,
                    cleared_at = NULL, dismissed_at = NULL, detail = EXCLUDED.detail
                """,
                [app.id, now, [r[0] for r in raise_rows], [r[1] for r in raise_rows], [r[2] for r in raise_rows]],
            )
        if update_rows:
            cursor.execute(
                "UPDATE analytics_orgsignal s SET detail = u.detail::jsonb"
                " FROM unnest(%s::bigint[], %s::text[]) AS u(id, detail) WHERE s.id = u.id",
                [[r[0] for r in update_rows], [r[1] for r in update_rows]],
            )
        if clear_ids:
            cursor.execute("UPDATE analytics_orgsignal SET cleared_at = %s WHERE id = ANY(%s)", [now, clear_ids])
    return {"raised": len(raise_rows), "cleared": len(clear_ids)}


@dataclass
class ScanChunk:
    orgs: int
    raised: int
    cleared: int
    next_after: int | None  # org id to resume after; None when the app is done
    revenue: dict[str, int] = field(default_factory=dict)  # analytics/signals.py's counts


def organizations_scan_chunk(
    *,
    app: Application,
    now: datetime,
    after_id: int = 0,
    limit: int | None = None,
    model: dict[str, Any] | None = None,
    ctx: _AppContext | None = None,
) -> ScanChunk:
    """Score up to `limit` orgs of the app with an id above `after_id`, in one short transaction."""
    limit = limit or settings.ANALYTICS_SCAN_CHUNK_ORGS
    today = now.date()
    model = model or model_get(app)
    ctx = ctx or _AppContext(app, model, today)
    with transaction.atomic():
        if after_id == 0:
            _org_limit_flag(app)
            cutoff = today - timedelta(days=settings.ANALYTICS_HEALTH_HISTORY_DAYS)
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM analytics_orghealthday WHERE application_id = %s AND day < %s", [app.id, cutoff]
                )
        rows = list(
            Organization.objects.filter(application=app, id__gt=after_id)
            .order_by("id")
            .values_list("id", "customer_org_id", "first_seen", "last_seen")[:limit]
        )
        if not rows:
            return ScanChunk(0, 0, 0, None)
        facts = _facts(app, [(r[1], r[2], r[3]) for r in rows], today, ctx, live=True)
        verdicts = {org: health_evaluate(f, model) for org, f in facts.items()}
        _add_move_reasons(verdicts, _moves(app, verdicts, today))
        _write(app, [(r[0], r[1]) for r in rows], verdicts, now)
        counts = _signals_write(app, verdicts, now)
        # issue 20: the revenue-aware signals, and `signal.raised` for this chunk's activations (at `now`),
        # committed with them (analytics/signals.py); idempotent, so running it per chunk is safe.
        from .signals import revenue_signals_scan

        revenue_counts = revenue_signals_scan(app=app, now=now)
    return ScanChunk(
        len(rows),
        counts["raised"],
        counts["cleared"],
        rows[-1][0] if len(rows) == limit else None,
        {k: int(v) for k, v in revenue_counts.items()},
    )


def organizations_scan(*, app: Application, now: datetime | None = None, chunk: int | None = None) -> dict[str, int]:
    """Rescore every org of the app, chunk after chunk (the task queues chunks separately). Idempotent."""
    now = now or timezone.now()
    model = model_get(app)
    ctx = _AppContext(app, model, now.date())
    counts = {"orgs": 0, "raised": 0, "cleared": 0}
    after: int | None = 0
    while after is not None:
        part = organizations_scan_chunk(app=app, now=now, after_id=after, limit=chunk, model=model, ctx=ctx)
        counts["orgs"] += part.orgs
        counts["raised"] += part.raised
        counts["cleared"] += part.cleared
        for key, value in part.revenue.items():
            counts[key] = counts.get(key, 0) + value
        after = part.next_after
    return counts


def churn_dates_from_revenue(app: Application) -> dict[str, date] | None:
    """Churn dates (the day an org's MRR went to 0 for good) per org from imported revenue data, or None.

    Until revenue data exists for the app, the backtest falls back to churn by silence (30 days
    without an event after regular use).
    """
    if not has_revenue_data(app=app):
        return None
    return churn_dates(app=app)
