"""Reads of the analytics app that every endpoint and page share: who may read which application."""

import base64
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, timedelta

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from pyroaring import BitMap
from rest_framework.exceptions import NotFound

from apps_registry.models import Application, Membership
from ingest.errors import ApiError

from . import bitmaps
from .fold import PATH_KEY_LENGTH
from .models import ALL_ENVIRONMENTS, Feature, Organization, OrgSignal, Source
from .reads import read_budget_check, timed_read

# Deactivation (README, "Analytics (rollups, organizations, read API)"):
# - a deactivated COMPANY is closed to its members: its applications answer 404 in the API and the
#   pages, as another company's do (superusers, i.e. support, still read them);
# - a deactivated APPLICATION of an active company stays readable (its history; ingest already
#   refuses its events) but is read-only: defining or removing features and dismissing signals
#   answer 403 `application_inactive`, for everyone (superusers included).


def applications_readable(*, user: User | AnonymousUser | None) -> QuerySet[Application]:
    """Applications of the user's company (any role) while the company is active; all for a superuser."""
    apps = Application.objects.select_related("company")
    if user is None or not user.is_authenticated or not user.is_active:
        return apps.none()
    if user.is_superuser:
        return apps.all()
    membership = Membership.objects.filter(user=user).values_list("company_id", flat=True).first()
    if membership is None:
        return apps.none()
    return apps.filter(company_id=membership, company__is_active=True)


def application_active_check(*, app: Application) -> None:
    """A write to a deactivated application (or one of a deactivated company): 403, whoever asks."""
    if not (app.is_active and app.company.is_active):
        raise ApiError(
            status_code=403,
            code="application_inactive",
            message="The application is deactivated: its analytics are read-only.",
        )


def application_readable_get(*, user: User | AnonymousUser | None, app_uuid: uuid.UUID) -> Application:
    """The application, or 404 — the same answer for another company's app as for an unknown one."""
    app = applications_readable(user=user).filter(uuid=app_uuid).first()
    if app is None:
        raise NotFound("Unknown application.")
    return app


def application_writable(*, user: User | AnonymousUser | None, app: Application) -> bool:
    """Owners and admins of the app's company, and superusers, may change its analytics settings
    (while it is active: see `application_active_check`)."""
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


def text_param(name: str, value: str) -> str:
    """A client's text bound for a PostgreSQL text column: PostgreSQL refuses NUL, so it is a 400 naming
    the member, not a DataError answered 503 "database unavailable" and logged at ERROR."""
    if "\x00" in value:
        raise invalid_parameter(name, "Must not contain NUL characters.")
    return value


def default_window(*, today: date | None = None, days: int = 30) -> tuple[date, date]:
    """The last `days` UTC days, today included."""
    today = today or timezone.now().date()
    return today - timedelta(days=days - 1), today


def _env_key(environment: str | None) -> str:
    """The rollup key of an environment filter: ALL_ENVIRONMENTS when none is given."""
    return ALL_ENVIRONMENTS if environment is None else environment


def _rows(sql: str, params: list | dict) -> list[tuple]:
    read_budget_check()
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


# --- Bitmap rows, cached per process by (table, id, xmin) ---------------------------------------------
# A rollup row's bitmaps are fetched once and kept decoded until the row changes (its xmin moves):
# a warm read fetches only ids and versions, plus the few rows the fold touched since (today's).

BITMAP_CACHE_MAX_BYTES = 256 * 1024 * 1024
_bitmap_cache: OrderedDict[tuple[str, tuple[str, ...], int], tuple[str, int, tuple[BitMap, ...]]] = OrderedDict()
_bitmap_cache_bytes = 0


def _bitmap_rows(table: str, columns: tuple[str, ...], meta: str, where: str, params: list) -> list[tuple]:
    """Rows of `table` matching `where`: the `meta` columns followed by the decoded `columns` bitmaps."""
    global _bitmap_cache_bytes
    rows = _rows(f"SELECT id, xmin::text, {meta} FROM {table} WHERE {where}", params)  # noqa: S608 (from code)
    missing = [r[0] for r in rows if (hit := _bitmap_cache.get((table, columns, r[0]))) is None or hit[0] != r[1]]
    if missing:
        for row_id, version, *raws in _rows(
            f"SELECT id, xmin::text, {', '.join(columns)} FROM {table} WHERE id = ANY(%s)",  # noqa: S608
            [missing],
        ):
            size = sum(len(r) for r in raws if r)
            old = _bitmap_cache.pop((table, columns, row_id), None)
            if old is not None:
                _bitmap_cache_bytes -= old[1]
            _bitmap_cache[(table, columns, row_id)] = (version, size, tuple(bitmaps.load(r) for r in raws))
            _bitmap_cache_bytes += size
        while _bitmap_cache_bytes > BITMAP_CACHE_MAX_BYTES and _bitmap_cache:
            _, (_, size, _) = _bitmap_cache.popitem(last=False)
            _bitmap_cache_bytes -= size
    out = []
    for row_id, _, *rest in rows:
        entry = _bitmap_cache.get((table, columns, row_id))
        if entry is None:  # evicted or deleted meanwhile: read it alone
            raws = _rows(f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s", [row_id])  # noqa: S608
            maps = tuple(bitmaps.load(r) for r in raws[0]) if raws else tuple(BitMap() for _ in columns)
        else:
            _bitmap_cache.move_to_end((table, columns, row_id))
            maps = entry[2]
        out.append((*rest, *maps))
    return out


def _union(maps: list[BitMap]) -> BitMap:
    if not maps:
        return BitMap()
    if len(maps) == 1:
        return maps[0]
    return BitMap.union(*maps)


def _daily_rows(
    app: Application, env: str, source: str, date_from: date, date_to: date, columns: tuple[str, ...]
) -> list[tuple]:
    return _bitmap_rows(
        "analytics_dailytotal",
        columns,
        "day, events, users, orgs, sessions",
        "application_id = %s AND environment = %s AND source = %s AND day BETWEEN %s AND %s",
        [app.id, env, source, date_from, date_to],
    )


@timed_read
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
    rows = _daily_rows(app, _env_key(environment), source, date_from, date_to, ("users_bm", "orgs_bm", "sessions_bm"))
    daily = {r[0]: r for r in rows}
    buckets: dict[date, dict] = {}
    members: dict[date, list[tuple]] = {}
    for day in _days(date_from, date_to):
        label = max(_bucket(day, interval), date_from)
        entry = buckets.setdefault(label, {"date": label, "events": 0, "users": 0, "orgs": 0, "sessions": 0})
        row = daily.get(day)
        if row is None:
            continue
        entry["events"] += row[1]
        members.setdefault(label, []).append(row)
        if interval == "day":
            entry.update(users=row[2], orgs=row[3], sessions=row[4])
    if interval != "day":
        for label, bucket_rows in members.items():
            buckets[label].update(
                users=len(_union([r[5] for r in bucket_rows])),
                orgs=len(_union([r[6] for r in bucket_rows])) if source == Source.EVENTS else 0,
                sessions=len(_union([r[7] for r in bucket_rows])),
            )
    return {
        "series": list(buckets.values()),
        "totals": {
            "events": sum(r[1] for r in rows),
            "users": len(_union([r[5] for r in rows])),
            "orgs": len(_union([r[6] for r in rows])) if source == Source.EVENTS else 0,
            "sessions": len(_union([r[7] for r in rows])),
        },
    }


@timed_read
def active_users_get(*, app: Application, environment: str | None, source: str = Source.EVENTS) -> dict:
    """DAU, WAU, MAU as of today (UTC): distinct users on the last 1, 7 and 30 days."""
    today = timezone.now().date()
    rows = _daily_rows(app, _env_key(environment), source, today - timedelta(days=29), today, ("users_bm",))
    week = today - timedelta(days=6)
    return {
        "dau": sum(r[2] for r in rows if r[0] == today),
        "wau": len(_union([r[5] for r in rows if r[0] >= week])),
        "mau": len(_union([r[5] for r in rows])),
    }


def _env_where(environment: str | None) -> tuple[str, list]:
    """Rollups kept per environment only (NameDay, PathDay): every environment's rows when none is given."""
    if environment is None:
        return "", []
    return " AND environment = %s", [environment]


@timed_read
def pages_list(*, app: Application, date_from: date, date_to: date, environment: str | None, limit: int = 50) -> dict:
    """Most viewed paths first; a view is a stored event carrying that path. Users and orgs are exact."""
    env_sql, env_params = _env_where(environment)
    sql = "SELECT path, sum(views) AS v FROM analytics_pathday WHERE application_id = %s AND day BETWEEN %s AND %s"
    top = _rows(
        sql + env_sql + " GROUP BY path ORDER BY v DESC, path LIMIT %s",
        [app.id, date_from, date_to, *env_params, limit],
    )
    per_path: dict[str, tuple[list[BitMap], list[BitMap]]] = {path: ([], []) for path, _ in top}
    for path, users, orgs in _bitmap_rows(
        "analytics_pathday",
        ("users_bm", "orgs_bm"),
        "path",
        "application_id = %s AND path = ANY(%s) AND day BETWEEN %s AND %s" + env_sql,
        [app.id, list(per_path), date_from, date_to, *env_params],
    ):
        per_path[path][0].append(users)
        per_path[path][1].append(orgs)
    return {
        "pages": [
            {
                "path": path,
                "views": int(views),
                "users": len(_union(per_path[path][0])),
                "orgs": len(_union(per_path[path][1])),
            }
            for path, views in top
        ]
    }


@timed_read
def page_trend_get(*, app: Application, path: str, date_from: date, date_to: date, environment: str | None) -> dict:
    """Views and distinct users of one path per day."""
    text_param("path", path)
    env_sql, env_params = _env_where(environment)
    views: dict[date, int] = {}
    users: dict[date, list[BitMap]] = {}
    for day, n, bm in _bitmap_rows(
        "analytics_pathday",
        ("users_bm",),
        "day, views",
        "application_id = %s AND path = %s AND day BETWEEN %s AND %s" + env_sql,
        [app.id, path[:PATH_KEY_LENGTH], date_from, date_to, *env_params],
    ):
        views[day] = views.get(day, 0) + int(n)
        users.setdefault(day, []).append(bm)
    return {
        "path": path,
        "series": [
            {"date": day, "views": views.get(day, 0), "users": len(_union(users.get(day, [])))}
            for day in _days(date_from, date_to)
        ],
    }


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --- Features: a definition resolved to the rollups' path keys once --------------------------------------
# Matching `path LIKE ANY(prefixes)` on every PathDay row of the window cost rows times prefixes per feature
# (20 features of 1,000 prefixes: 40 s). Instead each feature's prefixes are matched once against the
# app's path dictionary (DenseId PATH: every path the rollups hold, as `left(path, 512)`), and again only
# for paths added since; a read then fetches the rows of the matched paths, one statement for every
# feature. Matching a path tests its own prefixes (one set lookup per distinct prefix length), so the
# cost does not grow with the number of rules. Cached per process until the definition changes.

_RESOLVED_MAX = 10_000


class _Resolved:
    """A definition's matched paths as of path id `top`. Never changed once cached (other threads may be
    iterating `paths`): new paths make a new entry."""

    __slots__ = ("paths", "prefixes", "top", "top_key")

    def __init__(self, prefixes: tuple[str, ...], paths: frozenset[str] = frozenset(), top: int = 0, top_key: str = ""):
        self.prefixes = prefixes
        self.paths = paths
        self.top = top  # highest path id matched so far
        self.top_key = top_key


_resolved: OrderedDict[tuple[int, int | None], _Resolved] = OrderedDict()
_resolved_lock = threading.Lock()


def _prefix_match(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    """`path` starts with one of `prefixes`: one set lookup per distinct prefix length, whatever their number."""
    wanted = set(prefixes)
    lengths = sorted({len(p) for p in wanted})

    def match(path: str) -> bool:
        for n in lengths:
            if n > len(path):
                return False
            if path[:n] in wanted:
                return True
        return False

    return match


def _feature_paths(app: Application, feature: Feature, paths: bitmaps._Reverse) -> frozenset[str]:
    """The rollup paths (PathDay keys) that start with one of the feature's prefixes."""
    prefixes = tuple(feature.path_prefixes)
    key = (app.id, feature.pk)
    entry = _resolved.get(key)
    if (
        entry is None
        or entry.prefixes != prefixes
        or entry.top > paths.top
        or (entry.top and paths.keys.get(entry.top) != entry.top_key)
    ):
        entry = _Resolved(prefixes)
    if paths.top > entry.top:
        match = _prefix_match(prefixes)
        keys = paths.keys
        found = {p for dense in range(entry.top + 1, paths.top + 1) if (p := keys.get(dense)) is not None and match(p)}
        entry = _Resolved(prefixes, entry.paths | found if found else entry.paths, paths.top, keys.get(paths.top, ""))
    with _resolved_lock:
        _resolved[key] = entry
        _resolved.move_to_end(key)
        while len(_resolved) > _RESOLVED_MAX:
            _resolved.popitem(last=False)
    return entry.paths


def features_sets(
    *,
    app: Application,
    features: list[Feature],
    date_from: date,
    date_to: date,
    environment: str | None,
    source: str,
) -> list[tuple[BitMap, BitMap]]:
    """(users, orgs) who used each feature in the window, in order: two statements for all of them."""
    env_sql, env_params = _env_where(environment)
    events = sorted({e for f in features for e in f.events})
    by_event: dict[str, list[tuple[BitMap, BitMap]]] = {}
    if events:
        for event, u, o in _bitmap_rows(
            "analytics_nameday",
            ("users_bm", "orgs_bm"),
            "event",
            "application_id = %s AND source = %s AND event = ANY(%s) AND day BETWEEN %s AND %s" + env_sql,
            [app.id, source, events, date_from, date_to, *env_params],
        ):
            by_event.setdefault(event, []).append((u, o))
    matched: list[frozenset[str]] = [frozenset() for _ in features]
    by_path: dict[str, list[tuple[BitMap, BitMap]]] = {}
    if source == Source.EVENTS and any(f.path_prefixes for f in features):
        read_budget_check()
        with connection.cursor() as cursor:
            paths = bitmaps.reverse(cursor, app.id, [bitmaps.PATH])[bitmaps.PATH]
        for i, feature in enumerate(features):
            if feature.path_prefixes:
                matched[i] = _feature_paths(app, feature, paths)
        wanted = sorted(set().union(*matched))
        if wanted:
            for path, u, o in _bitmap_rows(
                "analytics_pathday",
                ("users_bm", "orgs_bm"),
                "path",
                "application_id = %s AND path = ANY(%s) AND day BETWEEN %s AND %s" + env_sql,
                [app.id, wanted, date_from, date_to, *env_params],
            ):
                by_path.setdefault(path, []).append((u, o))
    out = []
    for feature, own in zip(features, matched, strict=True):
        pairs = [pair for event in set(feature.events) for pair in by_event.get(event, ())]
        if own:
            if len(own) < len(by_path):
                pairs += [pair for path in own for pair in by_path.get(path, ())]
            else:
                pairs += [pair for path, rows in by_path.items() if path in own for pair in rows]
        out.append((_union([u for u, _ in pairs]), _union([o for _, o in pairs])))
    return out


def feature_sets(
    *, app: Application, feature: Feature, date_from: date, date_to: date, environment: str | None, source: str
) -> tuple[BitMap, BitMap]:
    """(users, orgs) who used the feature in the window: the union over its event names' and paths' rows."""
    return features_sets(
        app=app, features=[feature], date_from=date_from, date_to=date_to, environment=environment, source=source
    )[0]


@timed_read
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
        rows = _daily_rows(app, _env_key(environment), source, date_from, date_to, ("orgs_bm",))
        orgs_active = len(_union([r[5] for r in rows]))
    else:
        orgs_active = 0  # SDK events carry no organization
    features = []
    defined = list(Feature.objects.filter(application=app).order_by("name"))
    sets = features_sets(
        app=app, features=defined, date_from=date_from, date_to=date_to, environment=environment, source=source
    )
    for feature, (users, orgs_used) in zip(defined, sets, strict=True):
        orgs = len(orgs_used)
        features.append(
            {
                "name": feature.name,
                "events": list(feature.events),
                "path_prefixes": list(feature.path_prefixes),
                "orgs_adopted": orgs,
                "orgs_active": orgs_active,
                "adoption": round(orgs / orgs_active, 4) if orgs_active else 0.0,
                "users": len(users),
            }
        )
    return {"features": features}


# Far beyond any real list (pages of at most 500), and within PostgreSQL's bigint OFFSET.
CURSOR_OFFSET_MAX = 100_000_000


def _cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_parameter("cursor", "Not a cursor this API returned.") from exc
    if not 0 <= offset <= CURSOR_OFFSET_MAX:
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
    """Exact distinct users and sessions of each org over the window: the window's (org, user) and
    (org, session) pair bitmaps intersected with each org's pairs."""
    rows = _daily_rows(
        app, _env_key(environment), Source.EVENTS, date_from, date_to, ("org_users_bm", "org_sessions_bm")
    )
    org_users = _union([r[5] for r in rows])
    org_sessions = _union([r[6] for r in rows])
    with connection.cursor() as cursor:
        dense = bitmaps.org_ids(cursor, app.id, org_ids)
        rev = bitmaps.reverse(cursor, app.id, [bitmaps.ORG_USER, bitmaps.ORG_SESSION])
    users: dict[str, int] = {}
    sessions: dict[str, int] = {}
    empty = BitMap()
    for org, o in dense.items():
        users[org] = org_users.intersection_cardinality(rev[bitmaps.ORG_USER].by_org.get(o, empty))
        sessions[org] = org_sessions.intersection_cardinality(rev[bitmaps.ORG_SESSION].by_org.get(o, empty))
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


@timed_read
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
    customer_org_ids: list[str] | None = None,
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
        text_param("search", search)
        sql += " AND o.customer_org_id ILIKE %s"
        params.append("%" + _like_prefix(search))
    if customer_org_ids is not None:  # issue 20: a page of ids chosen by analytics/revenue_orgs.py
        sql += " AND o.customer_org_id = ANY(%s)"
        params.append(customer_org_ids)
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


@timed_read
def organization_get(
    *, app: Application, customer_org_id: str, date_from: date, date_to: date, environment: str | None
) -> dict:
    """One org: the list figures plus a daily series, top pages, features used and health components."""
    text_param("customer_org_id", customer_org_id)
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
    events_per_day: dict[date, int] = {}
    path_views: dict[int, int] = {}
    for day, events, raw in _rows(
        "SELECT day, events, path_views FROM analytics_orgday WHERE application_id = %s AND environment = %s"
        " AND customer_org_id = %s AND day BETWEEN %s AND %s",
        [app.id, _env_key(environment), customer_org_id, date_from, date_to],
    ):
        events_per_day[day] = int(events)
        for path_id, n in bitmaps.load_counts(raw).items():
            path_views[path_id] = path_views.get(path_id, 0) + n
    with connection.cursor() as cursor:
        dense = bitmaps.org_ids(cursor, app.id, [customer_org_id]).get(customer_org_id)
        rev = bitmaps.reverse(cursor, app.id, [bitmaps.ORG_USER, bitmaps.ORG_SESSION, bitmaps.PATH])
    views = {rev[bitmaps.PATH].keys[p]: n for p, n in path_views.items()}
    empty = BitMap()
    own_users = rev[bitmaps.ORG_USER].by_org.get(dense, empty) if dense else empty
    own_sessions = rev[bitmaps.ORG_SESSION].by_org.get(dense, empty) if dense else empty
    per_day = {
        r[0]: (r[5].intersection_cardinality(own_users), r[6].intersection_cardinality(own_sessions))
        for r in _daily_rows(
            app, _env_key(environment), Source.EVENTS, date_from, date_to, ("org_users_bm", "org_sessions_bm")
        )
    }
    item["series"] = [
        {
            "date": day,
            "events": events_per_day.get(day, 0),
            "users": per_day.get(day, (0, 0))[0],
            "sessions": per_day.get(day, (0, 0))[1],
        }
        for day in _days(date_from, date_to)
    ]
    top = sorted(views.items(), key=lambda pv: (-pv[1], pv[0]))[:10]
    env_sql, env_params = _env_where(environment)
    path_users: dict[str, list[BitMap]] = {path: [] for path, _ in top}
    for path, bm in _bitmap_rows(
        "analytics_pathday",
        ("org_users_bm",),
        "path",
        "application_id = %s AND path = ANY(%s) AND day BETWEEN %s AND %s" + env_sql,
        [app.id, list(path_users), date_from, date_to, *env_params],
    ):
        path_users[path].append(bm)
    item["top_pages"] = [
        {"path": path, "views": n, "users": _union(path_users[path]).intersection_cardinality(own_users)}
        for path, n in top
    ]
    defined = list(Feature.objects.filter(application=app).order_by("name"))
    sets = features_sets(
        app=app, features=defined, date_from=date_from, date_to=date_to, environment=environment, source=Source.EVENTS
    )
    item["features_used"] = [f.name for f, (_, orgs) in zip(defined, sets, strict=True) if dense and dense in orgs]
    org = Organization.objects.get(application=app, customer_org_id=customer_org_id)
    item["health"] = {
        "score": org.health_score,
        "bucket": org.health_bucket or None,
        "components": org.health_components,
        "scanned_at": org.scanned_at,
    }
    return item
