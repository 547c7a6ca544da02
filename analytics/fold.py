"""The fold: stored events into rollups, exactly once, as an outbox consumer.

Rows to fold are found the way the export finds rows to send: each raw table has a `FoldCursor`,
and `enqueue` moves the ids stored past it, up to the table's horizon (ingest/horizon.py: no id below
it can still commit), into `analytics_foldqueue` blocks in one short transaction. Ingest pays nothing
for analytics: no trigger, no queue row in its transaction. Rows not folded yet are the queued ids
plus every id above the cursor (`unfolded_sql`), which is what the explorer's rollup path, retention
and the lag read. One chunk
is one transaction: claim up to `limit` queue rows with `DELETE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING`, copy their raw rows into a session temp table, upsert the counters (events,
views, usage, first/last seen) with one `INSERT ... SELECT ... GROUP BY ... ON CONFLICT` statement,
then OR the chunk's dense ids into the distinct-set bitmaps of the rows it touched, copy the
chunk's counted rows into the funnels' narrow table (analytics_funnelevent, with the same dense ids)
and commit. The queue rows and the counts commit together or not at all, so:

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

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from pyroaring import BitMap

from ingest import horizon
from ingest.models import Event, SdkEvent

from . import bitmaps
from .bitmaps import ORG, ORG_SESSION, ORG_USER, PATH, SESSION, USER
from .models import ALL_ENVIRONMENTS, FoldCursor, FoldQueue, Source

logger = logging.getLogger(__name__)

# Per-chunk costs (rewriting the day's rollup rows) are amortized over more events; one default, in settings.
CHUNK_SIZE: int = settings.ANALYTICS_FOLD_CHUNK_SIZE
PATH_KEY_LENGTH = 512  # rollup keys are btree-indexed: longer paths are cut (in rollups only; `left(path, 512)`)
SOURCES = {FoldQueue.SOURCE_EVENTS: str(Source.EVENTS), FoldQueue.SOURCE_SDK_EVENTS: str(Source.SDK_EVENTS)}
RAW_TABLES = {FoldQueue.SOURCE_EVENTS: Event._meta.db_table, FoldQueue.SOURCE_SDK_EVENTS: SdkEvent._meta.db_table}
# Ids queued per table and look: a backlog is queued in steps, each a short transaction, a few chunks
# ahead, so that a second folder finds work queued while the first one queues more.
ENQUEUE_LIMIT = 300_000

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
# row whose raw row is gone (its app was deleted) is simply dropped. The ids' bounds let PostgreSQL
# skip the weekly partitions they are not in (ingest/partitions.py): `= ANY` of a computed array alone
# prunes nothing, and every partition's index would be probed for every id.
_CLAIM_SQL = f"""
WITH q AS (
    DELETE FROM analytics_foldqueue WHERE id IN (
        SELECT id FROM analytics_foldqueue WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE SKIP LOCKED)
    RETURNING source, event_ids
),
ids AS (SELECT source, array_agg(i) AS ids, min(i) AS lo, max(i) AS hi FROM q, unnest(q.event_ids) i GROUP BY source),
copied AS (
    INSERT INTO analytics_fold_chunk
    SELECT {_EVENTS_COLUMNS} FROM ingest_event e
        WHERE e.id = ANY((SELECT ids FROM ids WHERE source = 1)::bigint[])
          AND e.id BETWEEN (SELECT lo FROM ids WHERE source = 1) AND (SELECT hi FROM ids WHERE source = 1)
    UNION ALL
    SELECT {_SDK_COLUMNS} FROM ingest_sdkevent e
        WHERE e.id = ANY((SELECT ids FROM ids WHERE source = 2)::bigint[])
          AND e.id BETWEEN (SELECT lo FROM ids WHERE source = 2) AND (SELECT hi FROM ids WHERE source = 2)
    RETURNING 1
)
SELECT (SELECT count(*) FROM q), (SELECT coalesce(sum(cardinality(event_ids)), 0) FROM q),
    (SELECT count(*) FROM copied)
"""  # noqa: S608 (column lists from code)

# Rebuild: rows of one app already folded (never the unfolded ones, which the fold owns), by id range.
_REBUILD_SQL = {
    1: f"""INSERT INTO analytics_fold_chunk SELECT {_EVENTS_COLUMNS} FROM ingest_event e
        WHERE e.application_id = %(app)s AND e.occurred_at >= %(since)s AND e.id > %(after)s
          AND NOT {{unfolded}}
        ORDER BY e.id LIMIT %(limit)s""",  # noqa: S608
    2: f"""INSERT INTO analytics_fold_chunk SELECT {_SDK_COLUMNS} FROM ingest_sdkevent e
        WHERE e.application_id = %(app)s AND e.occurred_at >= %(since)s AND e.id > %(after)s
          AND NOT {{unfolded}}
        ORDER BY e.id LIMIT %(limit)s""",  # noqa: S608
}

# What is not per day and key: organizations' first/last seen and plan usage. ORDER BY in each upsert
# keeps the lock order stable.
_COUNTERS_SQL = """
WITH c AS (SELECT * FROM analytics_fold_chunk WHERE counted AND org IS NOT NULL),
orgs AS (
    INSERT INTO analytics_organization AS o (application_id, customer_org_id, first_seen, last_seen, over_limit,
        health_bucket, health_components)
    SELECT app, org, min(occurred_at), max(occurred_at), false, '', '{}'::jsonb FROM c GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (application_id, customer_org_id) DO UPDATE SET
        first_seen = least(o.first_seen, excluded.first_seen), last_seen = greatest(o.last_seen, excluded.last_seen)
    WHERE excluded.first_seen < o.first_seen OR excluded.last_seen > o.last_seen
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
    "DELETE FROM analytics_funnelevent WHERE application_id = %(app)s"
    " AND occurred_us >= (EXTRACT(EPOCH FROM %(start)s::timestamptz) * 1000000)::bigint",
]


@dataclass(frozen=True)
class _Rollup:
    """A per-day rollup table the fold reads, merges in Python and writes back (one writer per app)."""

    table: str
    keys: tuple[str, ...]  # after application_id
    key_types: tuple[str, ...]
    counter: str
    bitmaps: tuple[str, ...]
    cardinalities: tuple[str, ...] = ()  # integer columns = cardinality of the same-position bitmap
    counts: str = ""  # a sparse counter column (OrgDay.path_views)


DAILY = _Rollup(
    "analytics_dailytotal",
    ("environment", "source", "day"),
    ("varchar", "varchar", "date"),
    "events",
    ("users_bm", "orgs_bm", "sessions_bm", "org_users_bm", "org_sessions_bm"),
    ("users", "orgs", "sessions"),
)
NAMES = _Rollup(
    "analytics_nameday",
    ("source", "event", "environment", "day"),
    ("varchar", "varchar", "varchar", "date"),
    "events",
    ("users_bm", "orgs_bm"),
)
PATHS = _Rollup(
    "analytics_pathday",
    ("environment", "day", "path"),
    ("varchar", "date", "varchar"),
    "views",
    ("users_bm", "orgs_bm", "org_users_bm"),
)
ORG_DAYS = _Rollup(
    "analytics_orgday",
    ("environment", "day", "customer_org_id"),
    ("varchar", "date", "varchar"),
    "events",
    (),
    counts="path_views",
)


def _merge(cursor: Any, app: int, spec: _Rollup, added: dict[tuple, list]) -> None:
    """Add a chunk to its rows: `added[key]` = [count, id list per bitmap..., {id: n} if spec.counts].

    Existing rows are read, merged and written back with one UPDATE; missing ones are inserted with
    one INSERT. Safe without row locks: the caller holds the app's fold lock.
    """
    if not added:
        return
    nkeys, nbm = len(spec.keys), len(spec.bitmaps)
    key_list = sorted(added)
    unnest = ", ".join(f"%s::{t}[]" for t in spec.key_types)
    stored = [spec.counter, *spec.bitmaps, *([spec.counts] if spec.counts else [])]
    cursor.execute(
        f"SELECT id, {', '.join(spec.keys)}, {', '.join(stored)} FROM {spec.table}"  # noqa: S608 (names from code)
        f" WHERE application_id = %s AND ({', '.join(spec.keys)}) IN (SELECT * FROM unnest({unnest}))",
        [app, *([k[i] for k in key_list] for i in range(nkeys))],
    )
    existing = {tuple(row[1 : 1 + nkeys]): row for row in cursor.fetchall()}
    value_columns = [spec.counter, *spec.bitmaps, *spec.cardinalities, *([spec.counts] if spec.counts else [])]
    value_types = [
        "bigint",
        *(["bytea"] * nbm),
        *(["int"] * len(spec.cardinalities)),
        *(["bytea"] if spec.counts else []),
    ]
    updates: list[list] = [[] for _ in range(1 + len(value_columns))]  # id + values
    inserts: list[list] = [[] for _ in range(nkeys + len(value_columns))]  # keys + values
    for key in key_list:
        new = added[key]
        row = existing.get(key)
        base = 1 + nkeys
        count = new[0] + (row[base] if row else 0)
        maps = []
        for i in range(nbm):
            merged = bitmaps.load(row[base + 1 + i]) if row else BitMap()
            merged.update(new[1 + i])
            maps.append(merged)
        values: list = [count, *(bitmaps.dump(m) for m in maps), *(len(m) for m in maps[: len(spec.cardinalities)])]
        if spec.counts:
            counts = bitmaps.load_counts(row[base + 1 + nbm]) if row else {}
            for k, n in new[1 + nbm].items():
                counts[k] = counts.get(k, 0) + n
            values.append(bitmaps.dump_counts(counts))
        if row:
            updates[0].append(row[0])
            for i, v in enumerate(values):
                updates[1 + i].append(v)
        else:
            for i, k in enumerate(key):
                inserts[i].append(k)
            for i, v in enumerate(values):
                inserts[nkeys + i].append(v)
    if updates[0]:
        cursor.execute(
            f"UPDATE {spec.table} t SET {', '.join(f'{c} = v.{c}' for c in value_columns)}"  # noqa: S608
            f" FROM unnest(%s::bigint[], {', '.join(f'%s::{t}[]' for t in value_types)})"
            f" AS v(id, {', '.join(value_columns)}) WHERE t.id = v.id",
            updates,
        )
    if inserts[0]:
        columns = [*spec.keys, *value_columns]
        arrays = ", ".join(f"%s::{t}[]" for t in (*spec.key_types, *value_types))
        cursor.execute(
            f"INSERT INTO {spec.table} (application_id, {', '.join(columns)})"  # noqa: S608
            f" SELECT %s, * FROM unnest({arrays})",
            [app, *inserts],
        )


# The chunk, grouped the way each rollup is keyed, with each group's keys as JSON arrays: a few rows
# per chunk instead of one per event (decoding 20,000 rows value by value costs more than the fold).
_GROUPED_SQL = """
SELECT app, GROUPING(event, path), env, source, day, event, path, count(*),
    json_agg(usr)::text, json_agg(org)::text, json_agg(sess)::text
FROM analytics_fold_chunk WHERE counted
GROUP BY GROUPING SETS ((app, env, source, day), (app, source, event, env, day), (app, env, day, path))
"""
_ORG_DAYS_SQL = """
SELECT app, json_agg(json_build_array(env, day, org, path, n))::text FROM (
    SELECT app, env, day::text AS day, org, path, count(*) AS n FROM analytics_fold_chunk
    WHERE counted AND org IS NOT NULL GROUP BY 1, 2, 3, 4, 5) g
GROUP BY 1
"""


def _grouped(cursor: Any) -> dict[int, dict[str, list]]:
    """Per app, the chunk's groups per rollup, in one scan (GROUPING SETS), plus its org-day views."""
    out: dict[int, dict[str, list]] = {}

    def of(app: int) -> dict[str, list]:
        return out.setdefault(app, {"daily": [], "names": [], "paths": [], "org_days": []})

    loads = orjson.loads
    cursor.execute(_GROUPED_SQL)
    for app, grouping, env, src, day, event, path, n, usr, org, sess in cursor.fetchall():
        if grouping == 3:  # (env, source, day)
            of(app)["daily"].append((env, SOURCES[src], day, n, loads(usr), loads(sess), loads(org)))
        elif grouping == 1:  # (source, event, env, day)
            of(app)["names"].append((SOURCES[src], event, env, day, n, loads(usr), loads(org)))
        elif path is not None:  # (env, day, path)
            of(app)["paths"].append((env, day, path, n, loads(usr), loads(org)))
    cursor.execute(_ORG_DAYS_SQL)
    for app, views in cursor.fetchall():
        of(app)["org_days"].append(loads(views))
    return out


# The funnels' narrow copy of the chunk's counted rows (analytics_funnelevent, migration 0007): one
# INSERT per chunk and app, the chunk's keys mapped to the dense ids just assigned by a hash join
# with two arrays (the chunk's distinct users and orgs, a few thousand), not one lookup per row.
_FUNNEL_EVENTS_SQL = """
INSERT INTO analytics_funnelevent (application_id, source, name, environment, occurred_us, user_dense, org_dense)
SELECT c.app, c.source, c.event, c.env, (EXTRACT(EPOCH FROM c.occurred_at) * 1000000)::bigint, u.dense, o.dense
FROM analytics_fold_chunk c
JOIN unnest(%s::varchar[], %s::int[]) AS u(k, dense) ON u.k = c.usr
LEFT JOIN unnest(%s::varchar[], %s::int[]) AS o(k, dense) ON o.k = c.org
WHERE c.counted AND c.app = %s
"""


def _fold_bitmaps(cursor: Any, app: int, groups: dict[str, list], *, use_cache: bool) -> bitmaps.Dictionary:
    """Dense ids of the chunk's users, orgs, sessions, paths and pairs, added to every touched row;
    the chunk's counted rows copied into analytics_funnelevent with the same ids.

    Whole arrays are mapped to ids with map/zip (C speed); Python never loops over single events.
    """
    dictionary = bitmaps.Dictionary(cursor, app, use_cache=use_cache)
    daily_groups = groups["daily"]
    users = dictionary.ids(USER, {k for g in daily_groups for k in g[4]})
    sessions = dictionary.ids(SESSION, {k for g in daily_groups for k in g[5]})
    orgs = dictionary.ids(ORG, {k for g in daily_groups for k in g[6] if k is not None})
    pairs_u: set = set()
    pairs_s: set = set()
    mapped = []
    for env, source, day, n, usr, sess, org in daily_groups:
        u = list(map(users.__getitem__, usr))
        s = list(map(sessions.__getitem__, sess))
        o = [None if k is None else orgs[k] for k in org]
        ou = [(a, b) for a, b in zip(o, u, strict=True) if a is not None]
        os_ = [(a, b) for a, b in zip(o, s, strict=True) if a is not None]
        pairs_u.update(ou)
        pairs_s.update(os_)
        mapped.append((env, source, day, n, u, s, o, ou, os_))
    org_users = dictionary.ids(ORG_USER, pairs_u)
    org_sessions = dictionary.ids(ORG_SESSION, pairs_s)
    daily: dict[tuple, list] = {}
    for env, source, day, n, u, s, o, ou, os_ in mapped:
        entry = [
            n,
            u,
            [x for x in o if x is not None],
            s,
            list(map(org_users.__getitem__, ou)),
            list(map(org_sessions.__getitem__, os_)),
        ]
        daily[(env, source, day)] = entry
        if env != ALL_ENVIRONMENTS:
            total = daily.setdefault((ALL_ENVIRONMENTS, source, day), [0, [], [], [], [], []])
            total[0] += n
            for i in range(1, 6):
                total[i] = total[i] + entry[i]

    def org_ids(keys: list) -> list[int]:
        return [orgs[k] for k in keys if k is not None]

    names = {
        (source, event, env, day): [n, list(map(users.__getitem__, u)), org_ids(o)]
        for source, event, env, day, n, u, o in groups["names"]
    }
    paths: dict[tuple, list] = {}
    for env, day, path, n, u_keys, o in groups["paths"]:
        u = list(map(users.__getitem__, u_keys))
        paths[(env, day, path)] = [
            n,
            u,
            org_ids(o),
            [org_users[(orgs[a], b)] for a, b in zip(o, u, strict=True) if a is not None],
        ]
    org_days: dict[tuple, list] = {}
    if groups["org_days"]:
        views = groups["org_days"][0]
        path_ids = dictionary.ids(PATH, {v[3] for v in views if v[3] is not None})
        for env, day_text, org, path, n in views:
            day = date.fromisoformat(day_text)
            for env_key in (env, ALL_ENVIRONMENTS) if env != ALL_ENVIRONMENTS else (env,):
                org_day = org_days.get((env_key, day, org))
                if org_day is None:
                    org_day = org_days[(env_key, day, org)] = [0, {}]
                org_day[0] += n
                if path is not None:
                    pid = path_ids[path]
                    org_day[1][pid] = org_day[1].get(pid, 0) + n
    _merge(cursor, app, DAILY, daily)
    _merge(cursor, app, NAMES, names)
    _merge(cursor, app, PATHS, paths)
    _merge(cursor, app, ORG_DAYS, org_days)
    cursor.execute(_FUNNEL_EVENTS_SQL, [list(users), list(users.values()), list(orgs), list(orgs.values()), app])
    return dictionary


def _fold_chunk_table(
    cursor: Any, *, now: datetime, usage_after: dict[int, int], use_cache: bool
) -> tuple[int, set[int], list[bitmaps.Dictionary]]:
    """Fold what the chunk table holds (the caller filled it in this transaction): (counted, apps, dictionaries).

    Reading and grouping the chunk needs no lock, so a second folder does it while the first merges.
    """
    by_app = _grouped(cursor)
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
    dictionaries = [_fold_bitmaps(cursor, app, groups, use_cache=use_cache) for app, groups in sorted(by_app.items())]
    counted = sum(g[3] for groups in by_app.values() for g in groups["daily"])
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


def unfolded_sql(source: int, alias: str = "e") -> str:
    """SQL condition on a raw row `alias` of `source`: stored but not folded yet (queued, or above the cursor).

    In one statement it sees one snapshot, and the fold moves rows between the two sets (and into the
    rollups) in single transactions, so a reader never counts a row twice or misses it.
    """
    source = int(source)  # inlined: a code constant, never client input
    queued = f"SELECT unnest(event_ids) FROM analytics_foldqueue WHERE source = {source}"  # noqa: S608 (an int)
    upto = f"SELECT coalesce(max(queued_upto), 0) FROM analytics_foldcursor WHERE source = {source}"  # noqa: S608
    return f"({alias}.id = ANY(ARRAY({queued})) OR {alias}.id > ({upto}))"


_ENQUEUE_SQL = """
WITH ids AS (SELECT id FROM {table} WHERE id > %(after)s AND id <= %(upto)s ORDER BY id LIMIT %(limit)s),
blocks AS (
    INSERT INTO analytics_foldqueue (source, event_ids)
    SELECT %(source)s, array_agg(id ORDER BY id) FROM (
        SELECT id, (row_number() OVER (ORDER BY id) - 1) / %(block)s AS block FROM ids) b
    GROUP BY block ORDER BY block
)
SELECT count(*), max(id) FROM ids
"""


def _cursor_locked(cursor: Any, source: int) -> FoldCursor | None:
    """The source's cursor, locked; None while another folder is queueing it (it does the work)."""
    state = FoldCursor.objects.select_for_update(skip_locked=True).filter(source=source).first()
    if state is None and not FoldCursor.objects.filter(source=source).exists():
        # A new database (or a flushed test one): nothing is queued or folded yet, so the cursor starts at 0.
        cursor.execute(
            "INSERT INTO analytics_foldcursor (source, queued_upto, safe_upto, horizon_id,"
            " horizon_holders) VALUES (%s, 0, 0, 0, '{}') ON CONFLICT DO NOTHING",
            [source],
        )
        state = FoldCursor.objects.select_for_update(skip_locked=True).filter(source=source).first()
    return state


def enqueue(*, limit: int = ENQUEUE_LIMIT) -> bool:
    """Queue the raw rows stored past each table's cursor, up to its horizon, in one short transaction.

    Returns whether ids wait above a cursor: drawn by writers still running, past `limit`, or being
    queued by another folder at this moment (its cursor row is locked): the caller looks again shortly.
    """
    waiting = False
    with transaction.atomic(), connection.cursor() as cursor:
        for source, table in RAW_TABLES.items():
            state = _cursor_locked(cursor, source)
            if state is None:  # another folder is queueing this table's rows right now
                waiting = True
                continue
            if state.safe_upto - state.queued_upto < limit:
                horizon.advance(cursor, table, state)
            if state.safe_upto > state.queued_upto:
                cursor.execute(
                    _ENQUEUE_SQL.format(table=table),
                    {
                        "after": state.queued_upto,
                        "upto": state.safe_upto,
                        "limit": limit,
                        "source": source,
                        "block": FoldQueue.QUEUE_IDS_PER_ROW,
                    },
                )
                taken, last = cursor.fetchone()
                state.queued_upto = last if taken >= limit else state.safe_upto
            state.save()
            waiting = waiting or state.horizon_id > state.queued_upto
    return waiting


# Which queue rows a chunk takes: the oldest unlocked ones, up to `limit` events. They are looked at
# under FOR UPDATE SKIP LOCKED inside a savepoint that is then rolled back (releasing the rows not
# taken, so other folders are not locked out of them), and claimed by the DELETE right after.
_PEEK_SQL = "SELECT id, cardinality(event_ids) FROM analytics_foldqueue ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"


def _pick(cursor: Any, limit: int) -> list[int]:
    cursor.execute("SAVEPOINT fold_peek")
    cursor.execute(_PEEK_SQL, [limit])
    picked: list[int] = []
    events = 0
    for queue_id, n in cursor.fetchall():
        if picked and events + n > limit:
            break
        picked.append(queue_id)
        events += n
    cursor.execute("ROLLBACK TO SAVEPOINT fold_peek")
    cursor.execute("RELEASE SAVEPOINT fold_peek")
    return picked


def fold_chunk(*, limit: int = CHUNK_SIZE, now: datetime | None = None) -> tuple[int, int, set[int]]:
    """Fold about `limit` queued rows (both tables) in one transaction: (claimed, counted, app ids)."""
    now = now or timezone.now()
    enqueue()
    usage_after = _usage_after()
    use_cache = not connection.in_atomic_block  # inside a caller's transaction new ids may yet roll back
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [FOLD_LOCK])
        cursor.execute(_CHUNK_TABLE)
        cursor.execute("DELETE FROM analytics_fold_chunk")  # empty unless inside a caller's transaction
        picked = _pick(cursor, limit)
        if not picked:
            return 0, 0, set()
        cursor.execute(_CLAIM_SQL, {"ids": picked})
        _, claimed, copied = cursor.fetchone()
        if not copied:  # nothing queued, or only rows whose app was deleted since
            return claimed, 0, set()
        counted, apps, dictionaries = _fold_chunk_table(cursor, now=now, usage_after=usage_after, use_cache=use_cache)
    for dictionary in dictionaries:
        dictionary.committed()
    return claimed, counted, apps


def _is_retryable(exc: OperationalError) -> bool:
    """Deadlocks and serialization failures between two folders: the chunk rolled back, try again."""
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None) in {"40P01", "40001"}


_IDLE_POLLS = 20
_IDLE_POLL_SECONDS = 0.025


def _unfolded_waiting() -> bool:
    """Whether rows wait: ids above a cursor not queued yet (or being queued by another folder), or
    queued ones (held by another folder, or just queued here)."""
    if enqueue():
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM analytics_foldqueue)")
        return bool(cursor.fetchone()[0])


def fold_drain(*, budget_seconds: float = 50.0, chunk_size: int = CHUNK_SIZE) -> FoldReport:
    """Fold queued rows until none are left or the time budget is used."""
    report = FoldReport()
    deadline = time.monotonic() + budget_seconds
    idle_polls = 0
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
            idle_polls = 0
            continue
        # Nothing claimable. Either nothing waits, or another folder holds every row: for a few
        # milliseconds while it peeks (its savepoint locks the rows it looks at), or for a whole chunk
        # once it has claimed them; or rows wait for their writers to commit (the horizon). Look again
        # briefly so that a peek or a commit in flight does not send this folder away.
        if idle_polls >= _IDLE_POLLS or not _unfolded_waiting():
            return report
        idle_polls += 1
        time.sleep(_IDLE_POLL_SECONDS)


def rollups_rebuild(
    *,
    app_id: int,
    since: date | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Recompute an app's rollups from the raw rows still stored, from `since` (default: its oldest row).

    One transaction under the fold lock taken alone: delete the app's rollups (and funnel rows) from
    that day, fold every already-folded row of the app again (rows still queued are left to the
    fold), commit. So a rebuild is idempotent and never races a fold; plan usage is not recounted.
    Days before `since` (and before the oldest stored row, whose raw rows retention deleted) keep
    their rollups. Dense ids are kept: they never change.
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
            cursor.execute(sql, {"app": app_id, "day": day, "start": start})
        for source, rebuild_template in _REBUILD_SQL.items():
            rebuild_sql = rebuild_template.format(unfolded=unfolded_sql(source))
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


def _cursor_of(source: int) -> int:
    return FoldCursor.objects.filter(source=source).values_list("queued_upto", flat=True).first() or 0


def _oldest_queued_id(source: int) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(event_ids[1]) FROM analytics_foldqueue WHERE source = %s", [source])
        return cursor.fetchone()[0]


def _oldest_unfolded_id(source: int) -> int | None:
    """The smallest id of `source` not folded yet: the first queued one, or the first above the cursor."""
    queued = _oldest_queued_id(source)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(id) FROM {RAW_TABLES[source]} WHERE id > %s",  # noqa: S608 (table from code)
            [_cursor_of(source)],
        )
        above = cursor.fetchone()[0]
    found = [i for i in (queued, above) if i is not None]
    return min(found) if found else None


def _source_of(model: type) -> int:
    return FoldQueue.SOURCE_EVENTS if model is Event else FoldQueue.SOURCE_SDK_EVENTS


def oldest_unfolded_received(queryset: QuerySet) -> datetime | None:
    """Receive time of the oldest row of `queryset` not folded yet (the admin's rollup lag)."""
    source = _source_of(queryset.model)
    queued = RawSQL("SELECT unnest(event_ids) FROM analytics_foldqueue WHERE source = %s", [source])
    unfolded = Q(pk__in=queued) | Q(pk__gt=_cursor_of(source))
    return queryset.filter(unfolded).order_by("pk").values_list("received_at", flat=True).first()


def retention_unfolded_filter(model: type) -> dict[str, Any]:
    """Filter kwargs retention adds so it never deletes a row the fold has not counted.

    Every row below the smallest unfolded id of its table is folded: one look at the (short) queue
    and the cursor instead of an anti-join per batch; rows above the bound wait for the next run.
    """
    source = _source_of(model)
    queued = _oldest_queued_id(source)
    bound = _cursor_of(source) + 1
    return {"id__lt": bound if queued is None else min(queued, bound)}


def fold_lag_seconds(*, now: datetime | None = None) -> float:
    """Age of the oldest stored event not yet folded in (by receive time); 0 when none waits."""
    now = now or timezone.now()
    waiting: list[datetime] = []
    for model in (Event, SdkEvent):
        oldest = _oldest_unfolded_id(_source_of(model))
        if oldest is not None:
            received = model.objects.filter(pk=oldest).values_list("received_at", flat=True).first()
            if received is not None:
                waiting.append(received)
    return max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0.0


def unfolded_count() -> int:
    """Stored rows of both tables not folded yet (queued or above the cursors): for tests and benches."""
    total = 0
    with connection.cursor() as cursor:
        for source, table in RAW_TABLES.items():
            cursor.execute(f"SELECT count(*) FROM {table} e WHERE {unfolded_sql(source)}")  # noqa: S608
            total += cursor.fetchone()[0]
    return total
