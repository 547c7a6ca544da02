"""Feature adoption over time: per week, the orgs and users that used a feature, the orgs that had
adopted it by then, and who adopted it in the window and who (active) did not.

Read from the rollups' bitmaps as `features_list` is (`selectors.feature_sets`), so the weekly
figures and the Features page's window figure come from the same rows. Weeks start Monday (UTC); the
first and last are clipped to the window.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pyroaring import BitMap
from rest_framework.exceptions import NotFound

from apps_registry.models import Application

from .models import DenseId, Feature, Source
from .selectors import _daily_rows, _env_key, _union, feature_sets

ORGS_LISTED_MAX = 1000


def _org_ids(app: Application, dense: BitMap) -> list[str]:
    """The customer org ids of dense ids, in byte order, at most ORGS_LISTED_MAX + 1 (to tell truncation)."""
    keys = DenseId.objects.filter(application=app, kind=DenseId.ORG, dense__in=list(dense)).values_list(
        "key", flat=True
    )
    return sorted(keys, key=lambda k: k.encode())[: ORGS_LISTED_MAX + 1]


def feature_adoption_get(
    *,
    app: Application,
    feature_name: str,
    date_from: date,
    date_to: date,
    environment: str | None,
    source: str = Source.EVENTS,
) -> dict[str, Any]:
    feature = Feature.objects.filter(application=app, name=feature_name).first()
    if feature is None:
        raise NotFound("Unknown feature.")
    weeks = []
    adopted_so_far = BitMap()
    monday = date_from - timedelta(days=date_from.weekday())
    while monday <= date_to:
        lo, hi = max(monday, date_from), min(monday + timedelta(days=6), date_to)
        users, orgs = feature_sets(
            app=app, feature=feature, date_from=lo, date_to=hi, environment=environment, source=source
        )
        adopted_so_far |= orgs
        weeks.append(
            {
                "week": monday.isoformat(),
                "orgs": len(orgs),
                "users": len(users),
                "orgs_adopted_to_date": len(adopted_so_far),
            }
        )
        monday += timedelta(days=7)
    orgs_adopted: BitMap = adopted_so_far
    active = BitMap()
    if source == Source.EVENTS:
        rows = _daily_rows(app, _env_key(environment), source, date_from, date_to, ("orgs_bm",))
        active = _union([r[5] for r in rows])
    adopted_ids = _org_ids(app, orgs_adopted)
    not_adopted_ids = _org_ids(app, active - orgs_adopted)
    return {
        "feature": feature.name,
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "weeks": weeks,
        "orgs_adopted": adopted_ids[:ORGS_LISTED_MAX],
        "orgs_active_not_adopted": not_adopted_ids[:ORGS_LISTED_MAX],
        "truncated": len(adopted_ids) > ORGS_LISTED_MAX or len(not_adopted_ids) > ORGS_LISTED_MAX,
    }
