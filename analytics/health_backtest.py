"""Is the health model right? The backtest against churn, and the preview of a model change.

Backtest: the orgs that churned in the last 180 days (a subscription set that ended, from revenue
data when the app has it: `health.churn_dates_from_revenue`; otherwise 30 days without an event
after regular use, the churn date being the first silent day) and as many retained orgs (seen in
the last 30 days, picked in a fixed pseudo-random order, each matched to a churned org's date).
For both, the score 30 days before the churn (or matched) date: from the history when it holds
that day, recomputed from the rollups otherwise. AUC = the chance that a random churned org scored
below a random retained one (ties count half): 0.5 is a coin toss, 1.0 a perfect ranking.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from django.utils import timezone

from apps_registry.models import Application

from .health import health_compute, model_get, model_merge
from .models import ALL_ENVIRONMENTS, HealthModel, Organization, OrgHealthDay
from .reads import timed_read

WINDOW_DAYS = 180
LEAD_DAYS = 30
CHURN_SILENCE_DAYS = 30
FLAGGED = ("at_risk", "watch")
BINS = [(0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 79), (80, 89), (90, 100)]


def _silence_churn(app: Application, today: date, regular_days: int) -> dict[str, date]:
    """Orgs whose last event is 30+ days old, whose first silent day falls in the window, after regular use."""
    from .health import _rows

    return {
        org: last + timedelta(days=1)
        for org, last in _rows(
            """
            SELECT o.customer_org_id, o.last_seen::date
            FROM analytics_organization o
            WHERE o.application_id = %(app)s
                AND o.last_seen < %(silent_since)s AND o.last_seen >= %(window_start)s
                AND (SELECT count(*) FROM analytics_orgday d WHERE d.application_id = o.application_id
                     AND d.environment = %(all)s AND d.customer_org_id = o.customer_org_id
                     AND d.events > 0 AND d.day BETWEEN (o.last_seen::date - 59) AND o.last_seen::date)
                    >= %(regular)s
            """,
            {
                "app": app.id,
                "silent_since": today - timedelta(days=CHURN_SILENCE_DAYS - 1),
                "window_start": today - timedelta(days=WINDOW_DAYS + 1),
                "all": ALL_ENVIRONMENTS,
                "regular": regular_days,
            },
        )
    }


def _stable_rank(org: str) -> str:
    return hashlib.sha256(org.encode()).hexdigest()


def _auc(churned: list[int], retained: list[int]) -> float | None:
    if not churned or not retained:
        return None
    wins = 0.0
    for c in churned:
        for r in retained:
            wins += 1.0 if c < r else 0.5 if c == r else 0.0
    return round(wins / (len(churned) * len(retained)), 4)


def _histogram(scores: list[int]) -> list[dict]:
    return [{"from": lo, "to": hi, "orgs": sum(lo <= s <= hi for s in scores)} for lo, hi in BINS]


@timed_read  # a person can trigger it (API, Settings page): under the analytics statement timeout
def health_backtest(
    *, app: Application, model: dict[str, Any] | None = None, today: date | None = None, use_history: bool = True
) -> dict:
    """The backtest of a model (the app's current one by default) on the app's churn of the last 180 days."""
    from .health import churn_dates_from_revenue

    today = today or timezone.now().date()
    model = model or model_get(app)
    revenue = churn_dates_from_revenue(app)
    definition = "revenue" if revenue is not None else "silence"
    if revenue is not None:
        churned = {o: d for o, d in revenue.items() if today - timedelta(days=WINDOW_DAYS) <= d <= today}
    else:
        churned = _silence_churn(app, today, int(model["regular_days"]))
    orgs = {
        o: (first.date(), last.date())
        for o, first, last in Organization.objects.filter(application=app).values_list(
            "customer_org_id", "first_seen", "last_seen"
        )
    }
    # Score as of 30 days before churn; an org that did not exist then cannot be judged.
    cases: list[tuple[str, str, date]] = []  # (org, group, as_of)
    for org, churn_day in sorted(churned.items(), key=lambda kv: (kv[1], kv[0])):
        as_of = churn_day - timedelta(days=LEAD_DAYS)
        if org in orgs and orgs[org][0] <= as_of:
            cases.append((org, "churned", as_of))
    retained_pool = sorted(
        (o for o, (_, last) in orgs.items() if o not in churned and (today - last).days < CHURN_SILENCE_DAYS),
        key=_stable_rank,
    )
    for _, _, as_of in list(cases):
        for i, org in enumerate(retained_pool):
            if orgs[org][0] <= as_of:
                cases.append((org, "retained", as_of))
                del retained_pool[i]
                break
    by_day: dict[date, list[str]] = defaultdict(list)
    for org, _, as_of in cases:
        by_day[as_of].append(org)
    history: dict[tuple[str, date], tuple[int | None, str]] = {}
    if use_history and cases:
        for org, day, score, bucket in OrgHealthDay.objects.filter(
            application=app, customer_org_id__in=[c[0] for c in cases], day__in=list(by_day)
        ).values_list("customer_org_id", "day", "score", "bucket"):
            history[(org, day)] = (score, bucket)
    scored: dict[tuple[str, date], tuple[int, str, str]] = {}
    for as_of, day_orgs in by_day.items():
        missing = [o for o in day_orgs if history.get((o, as_of), (None, ""))[0] is None]
        if missing:
            for org, verdict in health_compute(app=app, model=model, as_of=as_of, org_ids=missing).items():
                scored[(org, as_of)] = (verdict.raw_score, verdict.bucket, "recomputed")
        for org in day_orgs:
            if (org, as_of) not in scored and (org, as_of) in history:
                score, bucket = history[(org, as_of)]
                scored[(org, as_of)] = (int(score or 0), bucket, "history")
    rows: list[dict[str, Any]] = [
        {
            "customer_org_id": org,
            "group": group,
            "date": as_of,
            "score": scored[(org, as_of)][0],
            "bucket": scored[(org, as_of)][1],
            "from": scored[(org, as_of)][2],
        }
        for org, group, as_of in cases
        if (org, as_of) in scored
    ]
    churned_scores: list[int] = [int(r["score"]) for r in rows if r["group"] == "churned"]
    retained_scores: list[int] = [int(r["score"]) for r in rows if r["group"] == "retained"]
    flagged = sum(r["bucket"] in FLAGGED for r in rows if r["group"] == "churned")
    retained_flagged = sum(r["bucket"] in FLAGGED for r in rows if r["group"] == "retained")
    auc = _auc(churned_scores, retained_scores)
    return {
        "churn_definition": definition,
        "window_days": WINDOW_DAYS,
        "lead_days": LEAD_DAYS,
        "churned": len(churned_scores),
        "retained": len(retained_scores),
        "churned_flagged_share": round(flagged / len(churned_scores), 4) if churned_scores else None,
        "retained_flagged_share": round(retained_flagged / len(retained_scores), 4) if retained_scores else None,
        "auc": auc,
        "summary": backtest_sentence(auc, len(churned_scores), flagged),
        "distribution": {"churned": _histogram(churned_scores), "retained": _histogram(retained_scores)},
        "orgs": rows,
    }


def backtest_sentence(auc: float | None, churned: int, flagged: int) -> str:
    if auc is None:
        return (
            "Not enough history to judge the model: no organization churned in the last 180 days "
            "(30 days of silence after regular use), or none was retained."
        )
    quality = (
        "no better than chance"
        if auc < 0.6
        else "weak"
        if auc < 0.7
        else "useful"
        if auc < 0.8
        else "good"
        if auc < 0.9
        else "excellent"
    )
    return (
        f"AUC {auc:.2f} ({quality}): taking one churned and one retained organization at random, the churned one "
        f"had the lower score 30 days before churning {round(auc * 100)} % of the time (0.5 is a coin toss, "
        f"1.0 a perfect ranking). {flagged} of {churned} churned organizations were at risk or on watch by then."
    )


@timed_read
def health_model_preview(*, app: Application, config: dict[str, Any], today: date | None = None) -> dict:
    """What saving `config` would do: the orgs that change bucket, and the backtest of both models."""
    today = today or timezone.now().date()
    stored = HealthModel.objects.filter(application=app).values_list("config", flat=True).first() or {}
    current = model_merge(stored)
    proposed = model_merge({**stored, **config})
    verdicts = health_compute(app=app, model=proposed, as_of=today)
    changes: list[dict[str, Any]] = []
    moves: dict[str, int] = defaultdict(int)
    for org, bucket, score in Organization.objects.filter(application=app).values_list(
        "customer_org_id", "health_bucket", "health_score"
    ):
        verdict = verdicts.get(org)
        if verdict is None or verdict.bucket == bucket:
            continue
        moves[f"{bucket or 'unscored'}→{verdict.bucket}"] += 1
        changes.append(
            {
                "customer_org_id": org,
                "from": {"bucket": bucket or None, "score": score},
                "to": {"bucket": verdict.bucket, "score": verdict.score},
                "reason": verdict.reasons[0]["text"] if verdict.reasons else "",
            }
        )
    changes.sort(key=lambda c: str(c["customer_org_id"]))
    return {
        "model": proposed,
        "orgs": len(verdicts),
        "changed": len(changes),
        "moves": dict(sorted(moves.items())),
        "changes": changes[:200],
        "backtest": {
            "current": _backtest_brief(health_backtest(app=app, model=current, today=today)),
            "proposed": _backtest_brief(health_backtest(app=app, model=proposed, today=today, use_history=False)),
        },
    }


def _backtest_brief(result: dict) -> dict:
    return {k: result[k] for k in ("churned", "retained", "auc", "churned_flagged_share", "summary")}
