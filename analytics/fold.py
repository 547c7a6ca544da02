"""The fold: stored events into rollups, exactly once, as an outbox consumer.

Each `/v1/events` and SDK row carries `fold_pending` (a database default, so ingest's INSERTs need not
know about it). One chunk is ONE SQL statement in one transaction: claim pending rows with
`FOR UPDATE SKIP LOCKED`, clear their marker, and upsert every rollup with `INSERT ... SELECT ...
GROUP BY ... ON CONFLICT DO UPDATE`. The marker and the counts commit together or not at all, so:

- several workers never claim the same row (SKIP LOCKED) and each row is counted by whoever clears it;
- a worker killed mid-statement, or a database restart, rolls the whole chunk back: still pending;
- a re-run finds nothing pending for rows already folded.

Exact per-day distinct counts (users, orgs, sessions) come from the rows an `ON CONFLICT DO NOTHING`
insert actually inserted (RETURNING answers only those): a user seen again the same day is not
new, even when two folders race, because the second insert waits for the first to commit.

Plan usage per company and month (by `received_at`) is counted in the same statement, so it is
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
from django.utils import timezone

from ingest.models import Event, SdkEvent

from .models import ALL_ENVIRONMENTS, Source

logger = logging.getLogger(__name__)

CHUNK_SIZE = 5000
PATH_KEY_LENGTH = 512  # rollup keys are btree-indexed: longer paths are cut (in rollups only; `left(path, 512)`)

# The per-source part: which rows, and how a raw row maps to the rollup vocabulary.
_EVENTS_CLAIM = """
    claimed AS (
        UPDATE ingest_event e SET fold_pending = false
        FROM (SELECT id FROM ingest_event WHERE fold_pending ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) p
        WHERE e.id = p.id
        RETURNING e.id, e.company_id, e.application_id AS app, coalesce(e.environment, '') AS env,
            (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.occurred_at,
            date_trunc('month', e.received_at AT TIME ZONE 'UTC')::date AS month,
            e.event, e.user_hash AS usr, e.customer_org_id AS org, left(e.path, 512) AS path,
            e.session_id AS sess, true AS counted
    )"""

_SDK_CLAIM = """
    claimed AS (
        UPDATE ingest_sdkevent e SET fold_pending = false
        FROM (SELECT id FROM ingest_sdkevent WHERE fold_pending ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) p
        WHERE e.id = p.id
        RETURNING e.id, e.company_id, e.application_id AS app, ''::varchar AS env,
            (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.occurred_at,
            date_trunc('month', e.received_at AT TIME ZONE 'UTC')::date AS month,
            e.event_name AS event, coalesce(e.user_id, e.anon_id::text) AS usr, ''::varchar AS org,
            NULL::varchar AS path, e.session_id AS sess, e.consent_analytics AS counted
    )"""

# Everything else is shared. `c` = counted rows; `x` = counted rows once per environment key
# (their own environment and ALL_ENVIRONMENTS). ORDER BY in each upsert keeps lock order stable.
_FOLD_SQL = """
WITH {claim},
c AS (SELECT * FROM claimed WHERE counted),
x AS (SELECT c.*, k.env_key FROM c CROSS JOIN LATERAL (VALUES (c.env), (%(all)s)) AS k(env_key)),
new_users AS (
    INSERT INTO analytics_userday (application_id, environment, source, day, user_key)
    SELECT DISTINCT app, env_key, %(source)s, day, usr FROM x ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT DO NOTHING
    RETURNING application_id, environment, day
),
new_sessions AS (
    INSERT INTO analytics_sessionday (application_id, environment, source, day, session_id, customer_org_id)
    SELECT DISTINCT ON (app, env_key, day, sess) app, env_key, %(source)s, day, sess, org
    FROM x ORDER BY app, env_key, day, sess, org
    ON CONFLICT DO NOTHING
    RETURNING application_id, environment, day
),
org_days AS (
    INSERT INTO analytics_orgday (application_id, environment, day, customer_org_id, events)
    SELECT app, env_key, day, org, count(*) FROM x WHERE %(has_orgs)s GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (application_id, environment, day, customer_org_id)
    DO UPDATE SET events = analytics_orgday.events + excluded.events
    RETURNING application_id, environment, day, (xmax = 0) AS inserted
),
totals AS (
    INSERT INTO analytics_dailytotal (application_id, environment, source, day, events, users, orgs, sessions)
    SELECT app, env, %(source)s, day, sum(e), sum(u), sum(o), sum(s) FROM (
        SELECT app, env_key AS env, day, count(*) AS e, 0 AS u, 0 AS o, 0 AS s FROM x GROUP BY 1, 2, 3
        UNION ALL SELECT application_id, environment, day, 0, count(*), 0, 0 FROM new_users GROUP BY 1, 2, 3
        UNION ALL SELECT application_id, environment, day, 0, 0, count(*) FILTER (WHERE inserted), 0
            FROM org_days GROUP BY 1, 2, 3
        UNION ALL SELECT application_id, environment, day, 0, 0, 0, count(*) FROM new_sessions GROUP BY 1, 2, 3
    ) t GROUP BY 1, 2, 4 ORDER BY 1, 2, 4
    ON CONFLICT (application_id, environment, source, day) DO UPDATE SET
        events = analytics_dailytotal.events + excluded.events,
        users = analytics_dailytotal.users + excluded.users,
        orgs = analytics_dailytotal.orgs + excluded.orgs,
        sessions = analytics_dailytotal.sessions + excluded.sessions
),
event_days AS (
    INSERT INTO analytics_eventday (application_id, source, event, day, environment, customer_org_id, user_key, events)
    SELECT app, %(source)s, event, day, env, org, usr, count(*) FROM c
    GROUP BY 1, 3, 4, 5, 6, 7 ORDER BY 1, 3, 4, 5, 6, 7
    ON CONFLICT (application_id, source, event, day, environment, customer_org_id, user_key)
    DO UPDATE SET events = analytics_eventday.events + excluded.events
),
path_days AS (
    INSERT INTO analytics_pathday (application_id, day, environment, path, views)
    SELECT app, day, env, path, count(*) FROM c WHERE path IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (application_id, day, environment, path) DO UPDATE SET views = analytics_pathday.views + excluded.views
),
page_days AS (
    INSERT INTO analytics_pageday (application_id, path, day, environment, customer_org_id, user_key, views)
    SELECT app, path, day, env, org, usr, count(*) FROM c WHERE path IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (application_id, path, day, environment, customer_org_id, user_key)
    DO UPDATE SET views = analytics_pageday.views + excluded.views
),
orgs AS (
    INSERT INTO analytics_organization (application_id, customer_org_id, first_seen, last_seen, over_limit,
        health_bucket, health_components)
    SELECT app, org, min(occurred_at), max(occurred_at), false, '', '{{}}'::jsonb
    FROM c WHERE %(has_orgs)s GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (application_id, customer_org_id) DO UPDATE SET
        first_seen = least(analytics_organization.first_seen, excluded.first_seen),
        last_seen = greatest(analytics_organization.last_seen, excluded.last_seen)
),
usage AS (
    INSERT INTO apps_registry_usage (company_id, month, event_count, updated_at)
    SELECT company_id, month, count(*), %(now)s FROM claimed WHERE id > %(usage_after)s GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (company_id, month) DO UPDATE SET
        event_count = apps_registry_usage.event_count + excluded.event_count, updated_at = excluded.updated_at
    RETURNING id
)
SELECT (SELECT count(*) FROM claimed), (SELECT count(*) FROM c),
    (SELECT coalesce(array_agg(DISTINCT app), '{{}}') FROM c), (SELECT coalesce(array_agg(id), '{{}}') FROM usage),
    (SELECT max(id) FROM claimed)
"""

# Rebuild: the same statement over rows already folded (never the pending ones, which the fold owns),
# one id range of one app at a time; usage is not counted again (usage_after is past every id).
_EVENTS_REBUILD = """
    claimed AS (
        SELECT e.id, e.company_id, e.application_id AS app, coalesce(e.environment, '') AS env,
            (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.occurred_at,
            date_trunc('month', e.received_at AT TIME ZONE 'UTC')::date AS month,
            e.event, e.user_hash AS usr, e.customer_org_id AS org, left(e.path, 512) AS path,
            e.session_id AS sess, true AS counted
        FROM ingest_event e
        WHERE e.application_id = %(app)s AND NOT e.fold_pending AND e.occurred_at >= %(since)s AND e.id > %(after)s
        ORDER BY e.id LIMIT %(limit)s
    )"""

_SDK_REBUILD = """
    claimed AS (
        SELECT e.id, e.company_id, e.application_id AS app, ''::varchar AS env,
            (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.occurred_at,
            date_trunc('month', e.received_at AT TIME ZONE 'UTC')::date AS month,
            e.event_name AS event, coalesce(e.user_id, e.anon_id::text) AS usr, ''::varchar AS org,
            NULL::varchar AS path, e.session_id AS sess, e.consent_analytics AS counted
        FROM ingest_sdkevent e
        WHERE e.application_id = %(app)s AND NOT e.fold_pending AND e.occurred_at >= %(since)s AND e.id > %(after)s
        ORDER BY e.id LIMIT %(limit)s
    )"""

# Folds share this lock; a rebuild takes it alone, so no fold interleaves with its delete-and-recount.
FOLD_LOCK = 720_010
NO_USAGE = 2**63 - 1

# Rollups of one app from a day on; `(%(all)s)` rows included (they carry the same days).
_REBUILD_DELETE = [
    "DELETE FROM analytics_dailytotal WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_userday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_sessionday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_orgday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_eventday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_pathday WHERE application_id = %(app)s AND day >= %(day)s",
    "DELETE FROM analytics_pageday WHERE application_id = %(app)s AND day >= %(day)s",
]

# The first time a month's count passes the company's effective limit (same transaction as the count).
_OVERAGE_SQL = """
UPDATE apps_registry_usage u SET overage_at = %(now)s
FROM apps_registry_company co JOIN apps_registry_plan p ON p.id = co.plan_id
WHERE u.id = ANY(%(ids)s) AND co.id = u.company_id AND u.overage_at IS NULL
  AND u.event_count > coalesce(co.events_per_month_override, p.events_per_month)
"""


@dataclass(frozen=True)
class _Table:
    name: str
    db_table: str
    claim: str
    rebuild: str
    source: str
    has_orgs: bool
    model: type[Event] | type[SdkEvent]


TABLES = (
    _Table("events", Event._meta.db_table, _EVENTS_CLAIM, _EVENTS_REBUILD, Source.EVENTS, True, Event),
    _Table("sdk_events", SdkEvent._meta.db_table, _SDK_CLAIM, _SDK_REBUILD, Source.SDK_EVENTS, False, SdkEvent),
)


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


def _usage_after(table: _Table) -> int:
    with connection.cursor() as cursor:
        cursor.execute('SELECT last_id FROM analytics_usagecutoff WHERE "table" = %s', [table.db_table])
        row = cursor.fetchone()
    return row[0] if row else 0


def fold_chunk(*, table: _Table, limit: int = CHUNK_SIZE, now: datetime | None = None) -> tuple[int, int, set[int]]:
    """Fold up to `limit` pending rows of one table in one transaction: (claimed, counted, app ids)."""
    now = now or timezone.now()
    params: dict[str, Any] = {
        "limit": limit,
        "all": ALL_ENVIRONMENTS,
        "source": str(table.source),
        "has_orgs": table.has_orgs,
        "now": now,
        "usage_after": _usage_after(table),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [FOLD_LOCK])
        cursor.execute(_FOLD_SQL.format(claim=table.claim), params)
        claimed, counted, apps, usage_ids, _ = cursor.fetchone()
        if usage_ids:
            cursor.execute(_OVERAGE_SQL, {"now": now, "ids": list(usage_ids)})
    return claimed, counted, set(apps)


def _is_retryable(exc: OperationalError) -> bool:
    """Deadlocks and serialization failures between two folders: the chunk rolled back, try again."""
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None) in {"40P01", "40001"}


def fold_drain(*, budget_seconds: float = 50.0, chunk_size: int = CHUNK_SIZE) -> FoldReport:
    """Fold pending rows of both tables until none are left or the time budget is used."""
    report = FoldReport()
    deadline = time.monotonic() + budget_seconds
    for table in TABLES:
        while True:
            if time.monotonic() >= deadline:
                report.more = True
                return report
            try:
                claimed, counted, apps = fold_chunk(table=table, limit=chunk_size)
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
                break
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
    every already-folded row of the app again (rows still pending are left to the fold), commit. So a
    rebuild is idempotent and never races a fold; plan usage is not recounted. Days before `since`
    (and before the oldest stored row, whose raw rows retention deleted) keep their rollups.
    """
    day = since
    if day is None:
        oldest = [
            t.model.objects.filter(application_id=app_id).order_by("occurred_at").values_list("occurred_at", flat=True)
            for t in TABLES
        ]
        firsts = [f for f in (q.first() for q in oldest) if f is not None]
        if not firsts:
            return {"rows": 0, "since": None}
        day = min(firsts).astimezone(UTC).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    total = sum(
        t.model.objects.filter(application_id=app_id, fold_pending=False, occurred_at__gte=start).count()
        for t in TABLES
    )
    done = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FOLD_LOCK])
        for sql in _REBUILD_DELETE:
            cursor.execute(sql, {"app": app_id, "day": day})
        for table in TABLES:
            after = 0
            while True:
                params: dict[str, Any] = {
                    "app": app_id,
                    "since": start,
                    "after": after,
                    "limit": chunk_size,
                    "all": ALL_ENVIRONMENTS,
                    "source": str(table.source),
                    "has_orgs": table.has_orgs,
                    "now": timezone.now(),
                    "usage_after": NO_USAGE,
                }
                cursor.execute(_FOLD_SQL.format(claim=table.rebuild), params)
                claimed, _, _, _, last_id = cursor.fetchone()
                done += claimed
                if progress is not None:
                    progress(done, total)
                if claimed < chunk_size:
                    break
                after = last_id
    return {"rows": done, "since": day}


def fold_lag_seconds(*, now: datetime | None = None) -> float:
    """Age of the oldest stored event not yet folded in (by receive time); 0 when none waits."""
    now = now or timezone.now()
    oldest = [
        model.objects.filter(fold_pending=True).order_by("id").values_list("received_at", flat=True).first()
        for model in (Event, SdkEvent)
    ]
    waiting = [o for o in oldest if o is not None]
    return max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0.0
