"""The fold: stored events into rollups, exactly once, as an outbox consumer.

Every stored `/v1/events` and SDK row gets a narrow row in `analytics_foldqueue`, written by an AFTER
INSERT trigger in the transaction that stores the event (migration 0003_fold_queue_bitmaps). One chunk
is one transaction: claim up to `limit` queue rows with `DELETE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING`, copy their raw rows into a session temp table, upsert the counters (events,
views, usage, first/last seen) with one `INSERT ... SELECT ... GROUP BY ... ON CONFLICT` statement,
then OR the chunk's dense ids into the distinct-set bitmaps of the rows it touched, and commit. The
queue rows and the counts commit together or not at all, so:

- several workers never claim the same row (SKIP LOCKED) and each row is counted by whoever deletes it;
- a worker killed mid-chunk, or a database restart, rolls the whole chunk back: still queued;
- a re-run finds nothing queued for rows already folded.

Chunks of the same application are serialized by a transaction-level advisory lock per app (taken in
app order after the claim): the bitmaps are read, merged in Python and written back, which is only
correct with one writer per row, and dense ids are assigned under the same lock, so they commit in
order. Different apps fold in parallel.

Plan usage per company and month (by `received_at`) is counted in the same transaction, so it is
exactly once and never decreases when retention deletes raw rows; the overage flag is set in the
same transaction the first time the limit is passed. SDK rows without analytics consent are
folded for usage only: they never reach a rollup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ingest.models import Event, SdkEvent

from . import bitmaps
from .bitmaps import ORG, ORG_SESSION, ORG_USER, SESSION, USER
from .models import ALL_ENVIRONMENTS, FoldQueue, Source

logger = logging.getLogger(__name__)

CHUNK_SIZE = 20_000
PATH_KEY_LENGTH = 512  # rollup keys are btree-indexed: longer paths are cut (in rollups only; `left(path, 512)`)
SOURCES = {FoldQueue.SOURCE_EVENTS: str(Source.EVENTS), FoldQueue.SOURCE_SDK_EVENTS: str(Source.SDK_EVENTS)}

# Folds share this lock; a rebuild takes it alone, so no fold interleaves with its delete-and-recount.
FOLD_LOCK = 720_010
APP_LOCK = 720_011  # two-key advisory lock (APP_LOCK, app id): one writer of an app's rollups at a time
NO_USAGE = 2**63 - 1

# The chunk being folded, private to the session and emptied at every commit.
_CHUNK_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS analytics_fold_chunk (
    id bigint, source smallint, company_id bigint, app bigint, env varchar, day date, occurred_at timestamptz,
    month date, event varchar, usr varchar, org varchar, path varchar, sess text, counted boolean
) ON COMMIT DELETE ROWS
"""

# How a raw row maps to the rollup vocabulary (SDK rows: user = user_id else anon_id, no org/path/env).
_EVENTS_COLUMNS = """e.id, 1, e.company_id, e.application_id, coalesce(e.environment, ''),
    (e.occurred_at AT TIME ZONE 'UTC')::date, e.occurred_at,
    date_trunc('month', e.received_at AT TIME ZONE 'UTC')::date,
    e.event, e.user_hash, e.customer_org_id, left(e.path, 512), e.session_id::text, true"""
_SDK_COLUMNS = """e.id, 2, e.company_id, e.application_id, '',
    (e.occurred_at AT TIME ZONE 'UTC')::date, e.occurred_at,
    date_trunc('month', e.received_at AT TIME ZONE 'UTC')::date,
    e.event_name, coalesce(e.user_id, e.anon_id::text), NULL, NULL, e.session_id::text, e.consent_analytics"""

# Claim: delete the oldest unclaimed queue rows and copy their raw rows into the chunk table. A queue
# row whose raw row is gone (its app was deleted) is simply dropped.
_CLAIM_SQL = f"""
WITH q AS (
    DELETE FROM analytics_foldqueue WHERE id IN (
        SELECT id FROM analytics_foldqueue ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING source, event_id
),
copied AS (
    INSERT INTO analytics_fold_chunk
    SELECT {_EVENTS_COLUMNS} FROM ingest_event e
        WHERE e.id = ANY(ARRAY(SELECT event_id FROM q WHERE source = 1))
    UNION ALL
    SELECT {_SDK_COLUMNS} FROM ingest_sdkevent e
        WHERE e.id = ANY(ARRAY(SELECT event_id FROM q WHERE source = 2))
    RETURNING 1
)
SELECT (SELECT count(*) FROM q), (SELECT count(*) FROM copied)
"""  # noqa: S608 (column lists from code)

# Rebuild: rows of one app already folded (never the queued ones, which the fold owns), by id range.
_REBUILD_SQL = {
    1: f"""INSERT INTO analytics_fold_chunk SELECT {_EVENTS_COLUMNS} FROM ingest_event e
        WHERE e.application_id = %(app)s AND e.occurred_at >= %(since)s AND e.id > %(after)s
          AND NOT EXISTS (SELECT 1 FROM analytics_foldqueue q WHERE q.source = 1 AND q.event_id = e.id)
        ORDER BY e.id LIMIT %(limit)s""",  # noqa: S608
    2: f"""INSERT INTO analytics_fold_chunk SELECT {_SDK_COLUMNS} FROM ingest_sdkevent e
        WHERE e.application_id = %(app)s AND e.occurred_at >= %(since)s AND e.id > %(after)s
          AND NOT EXISTS (SELECT 1 FROM analytics_foldqueue q WHERE q.source = 2 AND q.event_id = e.id)
        ORDER BY e.id LIMIT %(limit)s""",  # noqa: S608
}

# Counters of the chunk: every row they need is created here, so the bitmap step only updates.
# `c` = counted rows; `x` = counted rows once per environment key (their own and ALL_ENVIRONMENTS).
# ORDER BY in each upsert keeps the lock order stable.
_COUNTERS_SQL = """
WITH c AS (SELECT *, CASE source WHEN 1 THEN 'events' ELSE 'sdk_events' END AS src
           FROM analytics_fold_chunk WHERE counted),
x AS (SELECT c.*, k.env_key FROM c CROSS JOIN LATERAL (VALUES (c.env), (%(all)s)) AS k(env_key)),
totals AS (
    INSERT INTO analytics_dailytotal (application_id, environment, source, day, events, users, orgs, sessions,
        users_bm, orgs_bm, sessions_bm, org_users_bm, org_sessions_bm)
    SELECT app, env_key, src, day, count(*), 0, 0, 0, '', '', '', '', '' FROM x GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (application_id, environment, source, day) DO UPDATE SET
        events = analytics_dailytotal.events + excluded.events
),
org_days AS (
    INSERT INTO analytics_orgday (application_id, environment, day, customer_org_id, events, path_views)
    SELECT app, env_key, day, org, sum(n), coalesce(jsonb_object_agg(path, n) FILTER (WHERE path IS NOT NULL), '{}')
    FROM (SELECT app, env_key, day, org, path, count(*) AS n FROM x WHERE org IS NOT NULL GROUP BY 1, 2, 3, 4, 5) g
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (application_id, environment, day, customer_org_id) DO UPDATE SET
        events = analytics_orgday.events + excluded.events,
        path_views = CASE WHEN excluded.path_views = '{}' THEN analytics_orgday.path_views ELSE (
            SELECT jsonb_object_agg(k, v) FROM (
                SELECT k, sum(v) AS v FROM (
                    SELECT key AS k, value::bigint AS v FROM jsonb_each_text(analytics_orgday.path_views)
                    UNION ALL SELECT key, value::bigint FROM jsonb_each_text(excluded.path_views)
                ) u GROUP BY k
            ) m
        ) END
),
names AS (
    INSERT INTO analytics_nameday (application_id, source, event, environment, day, events, users_bm, orgs_bm)
    SELECT app, src, event, env, day, count(*), '', '' FROM c GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (application_id, source, event, environment, day) DO UPDATE SET
        events = analytics_nameday.events + excluded.events
),
paths AS (
    INSERT INTO analytics_pathday (application_id, day, environment, path, views, users_bm, orgs_bm, org_users_bm)
    SELECT app, day, env, path, count(*), '', '', '' FROM c WHERE path IS NOT NULL
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (application_id, day, environment, path) DO UPDATE SET views = analytics_pathday.views + excluded.views
),
orgs AS (
    INSERT INTO analytics_organization (application_id, customer_org_id, first_seen, last_seen, over_limit,
        health_bucket, health_components)
    SELECT app, org, min(occurred_at), max(occurred_at), false, '', '{}'::jsonb
    FROM c WHERE org IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (application_id, customer_org_id) DO UPDATE SET
        first_seen = least(analytics_organization.first_seen, excluded.first_seen),
        last_seen = greatest(analytics_organization.last_seen, excluded.last_seen)
),
usage AS (
    INSERT INTO apps_registry_usage (company_id, month, event_count, updated_at)
    SELECT company_id, month, count(*), %(now)s FROM analytics_fold_chunk
    WHERE id > CASE source WHEN 1 THEN %(usage_after_events)s ELSE %(usage_after_sdk)s END
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (company_id, month) DO UPDATE SET
        event_count = apps_registry_usage.event_count + excluded.event_count, updated_at = excluded.updated_at
    RETURNING id
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM usage)
"""

# The first time a month's count passes the company's effective limit (same transaction as the count).
_OVERAGE_SQL = """
UPDATE apps_registry_usage u SET overage_at = %(now)s
FROM apps_registry_company co JOIN apps_registry_plan p ON p.id = co.plan_id
WHERE u.id = ANY(%(ids)s) AND co.id = u.company_id AND u.overage_at IS NULL
  AND u.event_count > coalesce(co.events_per_month_override, p.events_per_month)
"""

# Rollups of one app from a day on (ALL_ENVIRONMENTS rows included: they carry the same days).
_REBUILD_DELETE = [
    "DELETE FROM analytics_dailytotal WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_orgday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_nameday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_pathday WHERE application_id = %(app)s AND day >= %(day)s",
]

# The bitmap columns of each rollup table, and its key columns (after application_id).
_BITMAP_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # table: (key columns, key SQL types, bitmap columns)
    "analytics_dailytotal": (
        ("environment", "source", "day"),
        ("varchar", "varchar", "date"),
        ("users_bm", "orgs_bm", "sessions_bm", "org_users_bm", "org_sessions_bm"),
    ),
    "analytics_nameday": (
        ("source", "event", "environment", "day"),
        ("varchar", "varchar", "varchar", "date"),
        ("users_bm", "orgs_bm"),
    ),
    "analytics_pathday": (
        ("environment", "day", "path"),
        ("varchar", "date", "varchar"),
        ("users_bm", "orgs_bm", "org_users_bm"),
    ),
}
# DailyTotal's integer counts are the cardinalities of these bitmaps.
_CARDINALITIES = {"users_bm": "users", "orgs_bm": "orgs", "sessions_bm": "sessions"}


def _merge_bitmaps(cursor: Any, app: int, table: str, added: dict[tuple, list[list[int]]]) -> None:
    """OR `added` ids into the rows (created by the counters step) and write them back in one UPDATE."""
    if not added:
        return
    keys, types, columns = _BITMAP_TABLES[table]
    key_list = sorted(added)
    key_arrays = [list(k[i] for k in key_list) for i in range(len(keys))]
    unnest = ", ".join(f"%s::{t}[]" for t in types)
    cursor.execute(
        f"SELECT id, {', '.join(keys)}, {', '.join(columns)} FROM {table}"  # noqa: S608 (names from code)
        f" WHERE application_id = %s AND ({', '.join(keys)}) IN (SELECT * FROM unnest({unnest}))"
        " ORDER BY id FOR UPDATE",
        [app, *key_arrays],
    )
    ids: list[int] = []
    values: list[list[bytes]] = [[] for _ in columns]
    counts: list[list[int]] = [[] for _ in columns]
    for row in cursor.fetchall():
        row_id, key, stored = row[0], tuple(row[1 : 1 + len(keys)]), row[1 + len(keys) :]
        new = added[key]
        ids.append(row_id)
        for i, raw in enumerate(stored):
            merged = bitmaps.load(raw)
            if new[i]:
                merged.update(new[i])
            counts[i].append(len(merged))
            values[i].append(bitmaps.dump(merged))
    sets = [f"{c} = v.{c}" for c in columns]
    arrays = [*("%s::bytea[]" for _ in columns)]
    names = list(columns)
    params: list = [ids, *values]
    if table == "analytics_dailytotal":
        for i, column in enumerate(columns):
            if column in _CARDINALITIES:
                sets.append(f"{_CARDINALITIES[column]} = v.n_{column}")
                arrays.append("%s::int[]")
                names.append(f"n_{column}")
                params.append(counts[i])
    cursor.execute(
        f"UPDATE {table} t SET {', '.join(sets)}"  # noqa: S608 (names from code)
        f" FROM unnest(%s::bigint[], {', '.join(arrays)}) AS v(id, {', '.join(names)}) WHERE t.id = v.id",
        params,
    )


def _fold_bitmaps(cursor: Any, app: int, rows: list[tuple], *, use_cache: bool) -> bitmaps.Dictionary:
    """Dense ids of the chunk's users, orgs, sessions and pairs, ORed into every touched bitmap row."""
    dictionary = bitmaps.Dictionary(cursor, app, use_cache=use_cache)
    users = dictionary.ids(USER, {r[5] for r in rows})
    orgs = dictionary.ids(ORG, {r[6] for r in rows if r[6] is not None})
    sessions = dictionary.ids(SESSION, {r[7] for r in rows})
    org_user_keys: dict[str, int] = {}
    org_session_keys: dict[str, int] = {}
    for r in rows:
        if r[6] is not None:
            o = orgs[r[6]]
            org_user_keys[f"{o}:{users[r[5]]}"] = o
            org_session_keys[f"{o}:{sessions[r[7]]}"] = o
    org_users = dictionary.ids(ORG_USER, org_user_keys, org_user_keys)
    org_sessions = dictionary.ids(ORG_SESSION, org_session_keys, org_session_keys)

    daily: dict[tuple, list[list[int]]] = {}
    names: dict[tuple, list[list[int]]] = {}
    paths: dict[tuple, list[list[int]]] = {}
    for src, env, day, event, path, usr, org, sess in rows:
        u = users[usr]
        s = sessions[sess]
        source = SOURCES[src]
        if org is not None:
            o = orgs[org]
            ou = org_users[f"{o}:{u}"]
            os_ = org_sessions[f"{o}:{s}"]
        for env_key in (env, ALL_ENVIRONMENTS):
            d = daily.get((env_key, source, day))
            if d is None:
                d = daily[(env_key, source, day)] = [[], [], [], [], []]
            d[0].append(u)
            d[2].append(s)
            if org is not None:
                d[1].append(o)
                d[3].append(ou)
                d[4].append(os_)
        n = names.get((source, event, env, day))
        if n is None:
            n = names[(source, event, env, day)] = [[], []]
        n[0].append(u)
        if org is not None:
            n[1].append(o)
        if path is not None:
            p = paths.get((env, day, path))
            if p is None:
                p = paths[(env, day, path)] = [[], [], []]
            p[0].append(u)
            if org is not None:
                p[1].append(o)
                p[2].append(ou)
    _merge_bitmaps(cursor, app, "analytics_dailytotal", daily)
    _merge_bitmaps(cursor, app, "analytics_nameday", names)
    _merge_bitmaps(cursor, app, "analytics_pathday", paths)
    return dictionary


def _fold_chunk_table(
    cursor: Any, *, now: datetime, usage_after: dict[int, int], use_cache: bool
) -> tuple[int, set[int], list[bitmaps.Dictionary]]:
    """Fold what the chunk table holds (the caller filled it in this transaction): (counted, apps, dictionaries)."""
    cursor.execute("SELECT DISTINCT app FROM analytics_fold_chunk ORDER BY 1")
    apps = [a for (a,) in cursor.fetchall()]
    for app in apps:  # in app order: two folders never wait on each other in a cycle
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [APP_LOCK, app])
    cursor.execute(
        _COUNTERS_SQL,
        {
            "all": ALL_ENVIRONMENTS,
            "now": now,
            "usage_after_events": usage_after.get(FoldQueue.SOURCE_EVENTS, 0),
            "usage_after_sdk": usage_after.get(FoldQueue.SOURCE_SDK_EVENTS, 0),
        },
    )
    (usage_ids,) = cursor.fetchone()
    if usage_ids:
        cursor.execute(_OVERAGE_SQL, {"now": now, "ids": list(usage_ids)})
    cursor.execute(
        "SELECT app, source, env, day, event, path, usr, org, sess FROM analytics_fold_chunk WHERE counted ORDER BY app"
    )
    by_app: dict[int, list[tuple]] = {}
    for row in cursor.fetchall():
        by_app.setdefault(row[0], []).append(row[1:])
    dictionaries = [_fold_bitmaps(cursor, app, rows, use_cache=use_cache) for app, rows in sorted(by_app.items())]
    counted = sum(len(r) for r in by_app.values())
    return counted, set(by_app), dictionaries


@dataclass
class FoldReport:
    claimed: int = 0
    counted: int = 0
    chunks: int = 0
    retried: int = 0
    more: bool = False
    applications: set[int] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {
            "claimed": self.claimed,
            "counted": self.counted,
            "chunks": self.chunks,
            "retried": self.retried,
            "more": self.more,
            "applications": sorted(self.applications),
        }


def _usage_after() -> dict[int, int]:
    """Per source, the last raw id already counted by the old usage recount (the fold skips those)."""
    with connection.cursor() as cursor:
        cursor.execute('SELECT "table", last_id FROM analytics_usagecutoff')
        cutoffs = dict(cursor.fetchall())
    return {
        FoldQueue.SOURCE_EVENTS: cutoffs.get(Event._meta.db_table, 0),
        FoldQueue.SOURCE_SDK_EVENTS: cutoffs.get(SdkEvent._meta.db_table, 0),
    }


def fold_chunk(*, limit: int = CHUNK_SIZE, now: datetime | None = None) -> tuple[int, int, set[int]]:
    """Fold up to `limit` queued rows (both tables) in one transaction: (claimed, counted, app ids)."""
    now = now or timezone.now()
    usage_after = _usage_after()
    use_cache = not connection.in_atomic_block  # inside a caller's transaction new ids may yet roll back
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [FOLD_LOCK])
        cursor.execute(_CHUNK_TABLE)
        cursor.execute("DELETE FROM analytics_fold_chunk")  # empty unless inside a caller's transaction
        cursor.execute(_CLAIM_SQL, {"limit": limit})
        claimed, copied = cursor.fetchone()
        if not copied:  # nothing queued, or only rows whose app was deleted since
            return claimed, 0, set()
        counted, apps, dictionaries = _fold_chunk_table(cursor, now=now, usage_after=usage_after, use_cache=use_cache)
    for dictionary in dictionaries:
        dictionary.committed()
    return claimed, counted, apps


def _is_retryable(exc: OperationalError) -> bool:
    """Deadlocks and serialization failures between two folders: the chunk rolled back, try again."""
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None) in {"40P01", "40001"}


def fold_drain(*, budget_seconds: float = 50.0, chunk_size: int = CHUNK_SIZE) -> FoldReport:
    """Fold queued rows until none are left or the time budget is used."""
    report = FoldReport()
    deadline = time.monotonic() + budget_seconds
    while True:
        if time.monotonic() >= deadline:
            report.more = True
            return report
        try:
            claimed, counted, apps = fold_chunk(limit=chunk_size)
        except OperationalError as exc:
            if not _is_retryable(exc) or report.retried >= 10:
                raise
            report.retried += 1
            continue
        report.claimed += claimed
        report.counted += counted
        report.applications |= apps
        if claimed:
            report.chunks += 1
        if claimed < chunk_size:
            return report


def rollups_rebuild(
    *,
    app_id: int,
    since: date | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Recompute an app's rollups from the raw rows still stored, from `since` (default: its oldest row).

    One transaction under the fold lock taken alone: delete the app's rollups from that day, fold
    every already-folded row of the app again (rows still queued are left to the fold), commit. So a
    rebuild is idempotent and never races a fold; plan usage is not recounted. Days before `since`
    (and before the oldest stored row, whose raw rows retention deleted) keep their rollups. Dense ids
    are kept: they never change.
    """
    day = since
    models = (Event, SdkEvent)
    if day is None:
        oldest = [
            m.objects.filter(application_id=app_id).order_by("occurred_at").values_list("occurred_at", flat=True)
            for m in models
        ]
        firsts = [f for f in (q.first() for q in oldest) if f is not None]
        if not firsts:
            return {"rows": 0, "since": None}
        day = min(firsts).astimezone(UTC).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    total = sum(m.objects.filter(application_id=app_id, occurred_at__gte=start).count() for m in models)
    done = 0
    no_usage = {FoldQueue.SOURCE_EVENTS: NO_USAGE, FoldQueue.SOURCE_SDK_EVENTS: NO_USAGE}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
        cursor.execute(_CHUNK_TABLE)
        for sql in _REBUILD_DELETE:
            cursor.execute(sql, {"app": app_id, "day": day})
        for rebuild_sql in _REBUILD_SQL.values():
            after = 0
            while True:
                cursor.execute("DELETE FROM analytics_fold_chunk")
                cursor.execute(rebuild_sql, {"app": app_id, "since": start, "after": after, "limit": chunk_size})
                claimed = cursor.rowcount
                if claimed:
                    cursor.execute("SELECT max(id) FROM analytics_fold_chunk")
                    after = cursor.fetchone()[0]
                    _fold_chunk_table(cursor, now=timezone.now(), usage_after=no_usage, use_cache=False)
                done += claimed
                if progress is not None:
                    progress(done, total)
                if claimed < chunk_size:
                    break
    logger.info("analytics rebuild of app %s from %s: %s rows", app_id, day, done)
    return {"rows": done, "since": day}


def _oldest_queued_id(source: int) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM analytics_foldqueue WHERE source = %s ORDER BY id LIMIT 1", [source])
        row = cursor.fetchone()
    return row[0] if row else None


def _source_of(model: type) -> int:
    return FoldQueue.SOURCE_EVENTS if model is Event else FoldQueue.SOURCE_SDK_EVENTS


def oldest_unfolded_received(queryset: QuerySet) -> datetime | None:
    """Receive time of the oldest row of `queryset` still queued for the fold (the admin's rollup lag)."""
    source = _source_of(queryset.model)
    table = queryset.model._meta.db_table
    ids = queryset.order_by().values("pk")
    sql, params = ids.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.received_at FROM analytics_foldqueue q JOIN {table} e ON e.id = q.event_id"  # noqa: S608
            f" WHERE q.source = %s AND q.event_id IN ({sql}) ORDER BY q.id LIMIT 1",
            [source, *params],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def retention_unfolded_filter(model: type) -> dict[str, Any]:
    """Filter kwargs retention adds so it never deletes a row still queued for the fold.

    Every row below the smallest queued id of its table is folded. One scan of the (short) queue
    instead of an anti-join per batch; rows above the bound wait for the next run.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(event_id) FROM analytics_foldqueue WHERE source = %s", [_source_of(model)])
        oldest = cursor.fetchone()[0]
    return {} if oldest is None else {"id__lt": oldest}


def fold_lag_seconds(*, now: datetime | None = None) -> float:
    """Age of the oldest stored event not yet folded in (by receive time); 0 when none waits."""
    now = now or timezone.now()
    waiting: list[datetime] = []
    for model in (Event, SdkEvent):
        oldest = _oldest_queued_id(_source_of(model))
        if oldest is not None:
            received = model.objects.filter(pk=oldest).values_list("received_at", flat=True).first()
            if received is not None:
                waiting.append(received)
    return max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0.0
