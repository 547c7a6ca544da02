"""Reads of the analytics app that every endpoint and page share: who may read which application."""

import base64
import uuid
from datetime import date, timedelta

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework.exceptions import NotFound

from apps_registry.models import Application, Membership
from ingest.errors import ApiError

from .fold import PATH_KEY_LENGTH
from .models import ALL_ENVIRONMENTS, Feature, Organization, OrgSignal, Source


def applications_readable(*, user: User | AnonymousUser | None) -> QuerySet[Application]:
    """Applications of the user's company (any role); every application for a superuser."""
    apps = Application.objects.select_related("company")
    if user is None or not user.is_authenticated or not user.is_active:
        return apps.none()
    if user.is_superuser:
        return apps.all()
    membership = Membership.objects.filter(user=user).values_list("company_id", flat=True).first()
    if membership is None:
        return apps.none()
    return apps.filter(company_id=membership)


def application_readable_get(*, user: User | AnonymousUser | None, app_uuid: uuid.UUID) -> Application:
    """The application, or 404 — the same answer for another company's app as for an unknown one."""
    app = applications_readable(user=user).filter(uuid=app_uuid).first()
    if app is None:
        raise NotFound("Unknown application.")
    return app


def application_writable(*, user: User | AnonymousUser | None, app: Application) -> bool:
    """Owners and admins of the app's company, and superusers, may change its analytics settings."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(
        user=user, company_id=app.company_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
    ).exists()


# --- Metrics -----------------------------------------------------------------------------------------
# Every figure is read from the rollups (analytics/models.py), never from raw events. Each selector
# returns the JSON-ready dict of its endpoint; the pages call the same selectors. Windows are UTC days,
# both ends inclusive. `environment=None` means every environment.

ORG_SORTS = {
    "-events": "events DESC",
    "events": "events ASC",
    "-last_seen": "o.last_seen DESC",
    "last_seen": "o.last_seen ASC",
    "-first_seen": "o.first_seen DESC",
    "first_seen": "o.first_seen ASC",
    "-health": "o.health_score DESC NULLS LAST",
    "health": "o.health_score ASC NULLS LAST",
    "customer_org_id": "o.customer_org_id ASC",
    "-customer_org_id": "o.customer_org_id DESC",
}
DEFAULT_ORG_SORT = "-events"
INTERVALS = ("day", "week", "month")


def invalid_parameter(name: str, message: str) -> ApiError:
    """A 400 in the project's error shape, naming the query parameter."""
    return ApiError(
        status_code=400,
        code="validation_failed",
        message="Invalid query parameters.",
        details=[{"field": name, "message": message}],
    )


def default_window(*, today: date | None = None, days: int = 30) -> tuple[date, date]:
    """The last `days` UTC days, today included."""
    today = today or timezone.now().date()
    return today - timedelta(days=days - 1), today


def _env_key(environment: str | None) -> str:
    """The rollup key of an environment filter: ALL_ENVIRONMENTS when none is given."""
    return ALL_ENVIRONMENTS if environment is None else environment


def _env_params(environment: str | None) -> list:
    """Parameters of `AND (%s::varchar IS NULL OR environment = %s)`, for rollups without ALL_ENVIRONMENTS rows."""
    return [environment, environment]


def _rows(sql: str, params: list | dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _days(date_from: date, date_to: date) -> list[date]:
    return [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]


def _bucket(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def activity_get(
    *,
    app: Application,
    date_from: date,
    date_to: date,
    environment: str | None,
    interval: str = "day",
    source: str = Source.EVENTS,
) -> dict:
    """Events and distinct users, orgs, sessions per day/week/month; totals distinct over the range."""
    env = _env_key(environment)
    base = [app.id, env, source, date_from, date_to]
    daily = {
        row[0]: row[1:]
        for row in _rows(
            "SELECT day, events, users, orgs, sessions FROM analytics_dailytotal"
            " WHERE application_id = %s AND environment = %s AND source = %s AND day BETWEEN %s AND %s",
            base,
        )
    }
    buckets: dict[date, dict] = {}
    for day in _days(date_from, date_to):
        label = max(_bucket(day, interval), date_from)
        entry = buckets.setdefault(label, {"date": label, "events": 0, "users": 0, "orgs": 0, "sessions": 0})
        events, users, orgs, sessions = daily.get(day, (0, 0, 0, 0))
        entry["events"] += events
        if interval == "day":
            entry.update(users=users, orgs=orgs, sessions=sessions)
    if interval != "day":
        trunc = f"greatest(date_trunc('{interval}', day)::date, %s)"  # interval is from INTERVALS
        for column, sql in (
            ("users", f"SELECT {trunc}, count(DISTINCT user_key) FROM analytics_userday"),  # noqa: S608
            ("sessions", f"SELECT {trunc}, count(DISTINCT session_id) FROM analytics_sessionday"),  # noqa: S608
        ):
            for label, n in _rows(
                sql + " WHERE application_id = %s AND environment = %s AND source = %s AND day BETWEEN %s AND %s"
                " GROUP BY 1",
                [date_from, *base],
            ):
                buckets[label][column] = n
        if source == Source.EVENTS:
            for label, n in _rows(
                f"SELECT {trunc}, count(DISTINCT customer_org_id) FROM analytics_orgday"  # noqa: S608
                " WHERE application_id = %s AND environment = %s AND day BETWEEN %s AND %s GROUP BY 1",
                [date_from, app.id, env, date_from, date_to],
            ):
                buckets[label]["orgs"] = n
    (users,) = _rows(
        "SELECT count(DISTINCT user_key) FROM analytics_userday"
        " WHERE application_id = %s AND environment = %s AND source = %s AND day BETWEEN %s AND %s",
        base,
    )[0]
    (sessions,) = _rows(
        "SELECT count(DISTINCT session_id) FROM analytics_sessionday"
        " WHERE application_id = %s AND environment = %s AND source = %s AND day BETWEEN %s AND %s",
        base,
    )[0]
    orgs = 0
    if source == Source.EVENTS:
        (orgs,) = _rows(
            "SELECT count(DISTINCT customer_org_id) FROM analytics_orgday"
            " WHERE application_id = %s AND environment = %s AND day BETWEEN %s AND %s",
            [app.id, env, date_from, date_to],
        )[0]
    return {
        "series": list(buckets.values()),
        "totals": {"events": sum(d[0] for d in daily.values()), "users": users, "orgs": orgs, "sessions": sessions},
    }


def active_users_get(*, app: Application, environment: str | None, source: str = Source.EVENTS) -> dict:
    """DAU, WAU, MAU as of today (UTC): distinct users on the last 1, 7 and 30 days."""
    today = timezone.now().date()
    dau, wau, mau = _rows(
        "SELECT count(DISTINCT user_key) FILTER (WHERE day = %s), count(DISTINCT user_key) FILTER (WHERE day >= %s),"
        " count(DISTINCT user_key) FROM analytics_userday"
        " WHERE application_id = %s AND environment = %s AND source = %s AND day BETWEEN %s AND %s",
        [today, today - timedelta(days=6), app.id, _env_key(environment), source, today - timedelta(days=29), today],
    )[0]
    return {"dau": dau, "wau": wau, "mau": mau}


def pages_list(*, app: Application, date_from: date, date_to: date, environment: str | None, limit: int = 50) -> dict:
    """Most viewed paths first; a view is a stored event carrying that path. Users and orgs are exact."""
    env_params = _env_params(environment)
    top = _rows(
        "SELECT path, sum(views) AS v FROM analytics_pathday WHERE application_id = %s AND day BETWEEN %s AND %s"
        " AND (%s::varchar IS NULL OR environment = %s)"
        " GROUP BY path ORDER BY v DESC, path LIMIT %s",
        [app.id, date_from, date_to, *env_params, limit],
    )
    paths = [p for p, _ in top]
    distinct = {
        path: (users, orgs)
        for path, users, orgs in _rows(
            "SELECT path, count(DISTINCT user_key), count(DISTINCT customer_org_id) FROM analytics_pageday"
            " WHERE application_id = %s AND path = ANY(%s) AND day BETWEEN %s AND %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
            " GROUP BY path",
            [app.id, paths, date_from, date_to, *env_params],
        )
    }
    return {
        "pages": [
            {"path": path, "views": int(views), "users": distinct[path][0], "orgs": distinct[path][1]}
            for path, views in top
        ]
    }


def page_trend_get(*, app: Application, path: str, date_from: date, date_to: date, environment: str | None) -> dict:
    """Views and distinct users of one path per day."""
    env_params = _env_params(environment)
    per_day = {
        day: (int(views), users)
        for day, views, users in _rows(
            "SELECT day, sum(views), count(DISTINCT user_key) FROM analytics_pageday"
            " WHERE application_id = %s AND path = %s AND day BETWEEN %s AND %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
            " GROUP BY day",
            [app.id, path[:PATH_KEY_LENGTH], date_from, date_to, *env_params],
        )
    }
    return {
        "path": path,
        "series": [
            {"date": day, "views": per_day.get(day, (0, 0))[0], "users": per_day.get(day, (0, 0))[1]}
            for day in _days(date_from, date_to)
        ],
    }


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _feature_match_sql(
    *, app: Application, feature: Feature, date_from: date, date_to: date, environment: str | None, source: str
) -> tuple[str, list]:
    """SELECT customer_org_id, user_key of every rollup row the feature matches (events or paths)."""
    env_params = _env_params(environment)
    parts: list[str] = []
    params: list = []
    if feature.events:
        parts.append(
            "SELECT customer_org_id, user_key FROM analytics_eventday WHERE application_id = %s AND source = %s"
            " AND event = ANY(%s) AND day BETWEEN %s AND %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
        )
        params += [app.id, source, list(feature.events), date_from, date_to, *env_params]
    if feature.path_prefixes and source == Source.EVENTS:
        # Resolve prefixes against the small per-path table first, then read per-user rows by exact path.
        parts.append(
            "SELECT customer_org_id, user_key FROM analytics_pageday WHERE application_id = %s"
            " AND path IN (SELECT DISTINCT path FROM analytics_pathday WHERE application_id = %s"
            " AND day BETWEEN %s AND %s AND path LIKE ANY(%s))"
            " AND day BETWEEN %s AND %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
        )
        params += [
            app.id,
            app.id,
            date_from,
            date_to,
            [_like_prefix(p) for p in feature.path_prefixes],
            date_from,
            date_to,
            *env_params,
        ]
    if not parts:
        return "SELECT ''::varchar AS customer_org_id, ''::varchar AS user_key WHERE false", []
    return " UNION ALL ".join(parts), params


def features_list(
    *,
    app: Application,
    date_from: date,
    date_to: date,
    environment: str | None,
    source: str = Source.EVENTS,
) -> dict:
    """Per feature: orgs that used it at least once / orgs active in the window, and its distinct users."""
    if source == Source.EVENTS:
        (orgs_active,) = _rows(
            "SELECT count(DISTINCT customer_org_id) FROM analytics_orgday"
            " WHERE application_id = %s AND environment = %s AND day BETWEEN %s AND %s",
            [app.id, _env_key(environment), date_from, date_to],
        )[0]
    else:
        orgs_active = 0  # SDK events carry no organization
    features = []
    for feature in Feature.objects.filter(application=app).order_by("name"):
        sql, params = _feature_match_sql(
            app=app, feature=feature, date_from=date_from, date_to=date_to, environment=environment, source=source
        )
        orgs, users = _rows(
            f"SELECT count(DISTINCT nullif(customer_org_id, '')), count(DISTINCT user_key) FROM ({sql}) m",  # noqa: S608
            params,
        )[0]
        features.append(
            {
                "name": feature.name,
                "events": list(feature.events),
                "path_prefixes": list(feature.path_prefixes),
                "orgs_adopted": orgs,
                "orgs_active": orgs_active,
                "adoption": round(orgs / orgs_active, 4) if orgs_active else 0.0,
                "users": users,
            }
        )
    return {"features": features}


def _cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_parameter("cursor", "Not a cursor this API returned.") from exc
    if offset < 0:
        raise invalid_parameter("cursor", "Not a cursor this API returned.")
    return offset


def _cursor_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _signals_of(app: Application, org_ids: list[str]) -> dict[str, list[dict]]:
    """Active, undismissed signals of these orgs."""
    signals: dict[str, list[dict]] = {org: [] for org in org_ids}
    for org, kind, since in (
        OrgSignal.objects.filter(
            application=app, customer_org_id__in=org_ids, cleared_at__isnull=True, dismissed_at__isnull=True
        )
        .order_by("kind")
        .values_list("customer_org_id", "kind", "active_since")
    ):
        signals[org].append({"signal": kind, "active_since": since})
    return signals


def _org_distincts(
    *, app: Application, org_ids: list[str], date_from: date, date_to: date, environment: str | None
) -> tuple[dict[str, int], dict[str, int]]:
    """Exact distinct users and sessions of each org over the window."""
    env_params = _env_params(environment)
    users = dict(
        _rows(
            "SELECT customer_org_id, count(DISTINCT user_key) FROM analytics_eventday"
            " WHERE application_id = %s AND customer_org_id = ANY(%s) AND day BETWEEN %s AND %s AND source = %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
            " GROUP BY 1",
            [app.id, org_ids, date_from, date_to, Source.EVENTS, *env_params],
        )
    )
    sessions = dict(
        _rows(
            "SELECT customer_org_id, count(DISTINCT session_id) FROM analytics_sessionday"
            " WHERE application_id = %s AND environment = %s AND customer_org_id = ANY(%s) AND day BETWEEN %s AND %s"
            " AND source = %s GROUP BY 1",
            [app.id, _env_key(environment), org_ids, date_from, date_to, Source.EVENTS],
        )
    )
    return users, sessions


def _org_item(row: tuple, users: dict, sessions: dict, signals: dict) -> dict:
    org, events, first_seen, last_seen, score, bucket, over_limit = row
    return {
        "customer_org_id": org,
        "events": int(events),
        "users": users.get(org, 0),
        "sessions": sessions.get(org, 0),
        "first_seen": first_seen,
        "last_seen": last_seen,
        "over_limit": over_limit,
        "health": {"score": score, "bucket": bucket or None},
        "signals": signals.get(org, []),
    }


_ORG_SELECT = """
SELECT o.customer_org_id, coalesce(d.events, 0) AS events, o.first_seen, o.last_seen, o.health_score,
    o.health_bucket, o.over_limit
FROM analytics_organization o
LEFT JOIN (
    SELECT customer_org_id, sum(events) AS events FROM analytics_orgday
    WHERE application_id = %s AND environment = %s AND day BETWEEN %s AND %s GROUP BY 1
) d ON d.customer_org_id = o.customer_org_id
WHERE o.application_id = %s
"""


def organizations_list(
    *,
    app: Application,
    date_from: date,
    date_to: date,
    environment: str | None,
    sort: str = DEFAULT_ORG_SORT,
    bucket: str | None = None,
    signal: str | None = None,
    search: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict:
    """Every org the app has ever seen (the window only changes the figures), filtered, sorted, paged."""
    if sort not in ORG_SORTS:
        raise invalid_parameter("sort", f"One of {', '.join(ORG_SORTS)}.")
    offset = _cursor_offset(cursor)
    sql = _ORG_SELECT
    params: list = [app.id, _env_key(environment), date_from, date_to, app.id]
    if bucket:
        sql += " AND o.health_bucket = %s"
        params.append(bucket)
    if signal:
        sql += (
            " AND EXISTS (SELECT 1 FROM analytics_orgsignal s WHERE s.application_id = o.application_id"
            " AND s.customer_org_id = o.customer_org_id AND s.kind = %s AND s.cleared_at IS NULL"
            " AND s.dismissed_at IS NULL)"
        )
        params.append(signal)
    if search:
        sql += " AND o.customer_org_id ILIKE %s"
        params.append("%" + _like_prefix(search))
    sql += f" ORDER BY {ORG_SORTS[sort]}, o.customer_org_id LIMIT %s OFFSET %s"
    params += [limit + 1, offset]
    rows = _rows(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    org_ids = [r[0] for r in rows]
    users, sessions = _org_distincts(
        app=app, org_ids=org_ids, date_from=date_from, date_to=date_to, environment=environment
    )
    signals = _signals_of(app, org_ids)
    company = app.company
    tracked = Organization.objects.filter(application__company_id=company.id).count()
    return {
        "organizations": [_org_item(r, users, sessions, signals) for r in rows],
        "next_cursor": _cursor_for(offset + limit) if more else None,
        "orgs_tracked": tracked,
        "orgs_max": company.orgs_max,
        "over_limit": tracked > company.orgs_max,
    }


def organization_get(
    *, app: Application, customer_org_id: str, date_from: date, date_to: date, environment: str | None
) -> dict:
    """One org: the list figures plus a daily series, top pages, features used and health components."""
    rows = _rows(
        _ORG_SELECT + " AND o.customer_org_id = %s",
        [app.id, _env_key(environment), date_from, date_to, app.id, customer_org_id],
    )
    if not rows:
        raise NotFound("Unknown organization.")
    org_ids = [customer_org_id]
    users, sessions = _org_distincts(
        app=app, org_ids=org_ids, date_from=date_from, date_to=date_to, environment=environment
    )
    item = _org_item(rows[0], users, sessions, _signals_of(app, org_ids))
    env_params = _env_params(environment)
    events_per_day = dict(
        _rows(
            "SELECT day, events FROM analytics_orgday WHERE application_id = %s AND environment = %s"
            " AND customer_org_id = %s AND day BETWEEN %s AND %s",
            [app.id, _env_key(environment), customer_org_id, date_from, date_to],
        )
    )
    users_per_day = dict(
        _rows(
            "SELECT day, count(DISTINCT user_key) FROM analytics_eventday WHERE application_id = %s"
            " AND customer_org_id = %s AND day BETWEEN %s AND %s AND source = %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
            " GROUP BY day",
            [app.id, customer_org_id, date_from, date_to, Source.EVENTS, *env_params],
        )
    )
    sessions_per_day = dict(
        _rows(
            "SELECT day, count(*) FROM analytics_sessionday WHERE application_id = %s AND environment = %s"
            " AND customer_org_id = %s AND day BETWEEN %s AND %s AND source = %s GROUP BY day",
            [app.id, _env_key(environment), customer_org_id, date_from, date_to, Source.EVENTS],
        )
    )
    item["series"] = [
        {
            "date": day,
            "events": int(events_per_day.get(day, 0)),
            "users": users_per_day.get(day, 0),
            "sessions": sessions_per_day.get(day, 0),
        }
        for day in _days(date_from, date_to)
    ]
    item["top_pages"] = [
        {"path": path, "views": int(views), "users": n}
        for path, views, n in _rows(
            "SELECT path, sum(views) AS v, count(DISTINCT user_key) FROM analytics_pageday WHERE application_id = %s"
            " AND customer_org_id = %s AND day BETWEEN %s AND %s"
            " AND (%s::varchar IS NULL OR environment = %s)"
            " GROUP BY path ORDER BY v DESC, path"
            " LIMIT 10",
            [app.id, customer_org_id, date_from, date_to, *env_params],
        )
    ]
    used = []
    for feature in Feature.objects.filter(application=app).order_by("name"):
        sql, params = _feature_match_sql(
            app=app,
            feature=feature,
            date_from=date_from,
            date_to=date_to,
            environment=environment,
            source=Source.EVENTS,
        )
        if _rows(f"SELECT 1 FROM ({sql}) m WHERE customer_org_id = %s LIMIT 1", [*params, customer_org_id]):  # noqa: S608
            used.append(feature.name)
    item["features_used"] = used
    org = Organization.objects.get(application=app, customer_org_id=customer_org_id)
    item["health"] = {
        "score": org.health_score,
        "bucket": org.health_bucket or None,
        "components": org.health_components,
        "scanned_at": org.scanned_at,
    }
    return item
