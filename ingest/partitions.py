"""The raw tables in weekly partitions: one PostgreSQL range partition per block of 2**40 ids.

Why by id, cut by time: everything that walks the raw tables walks ids (the export's and the fold's
cursors, the stream's keyset pages, the admin lists newest first), so those statements prune to the
partitions they need; and retention wants whole weeks it can drop. So each partition is a block of
ids, and a block is "this week": at the first maintenance run of a new week (Monday 00:00 UTC) the
table's id sequence is moved to the start of the next block, and from then on new rows land in the
next partition. Ids only ever grow, so the cursors (ingest/horizon.py) pass the gap like any other.

Why weekly: retention is counted in days per company (30 to 365 on our plans), so a week keeps a
dropped partition at most 7 days past the retention of its longest-kept rows, while a year of
retention is 53 partitions, few enough for the planner. Daily would mean 365 partitions to plan
over; monthly would keep rows up to a month too long.

Ingest never waits for a partition: the block after the current one always exists (made ahead, in
its own committed transaction, before the sequence may enter it), and a block holds 2**40 ids (a
week at 1.8 M events/s). If maintenance stops, the current partition simply keeps growing.

Creating and dropping take no lock that stops ingest: a partition is created alone and ATTACHed
(SHARE UPDATE EXCLUSIVE on the parent, which inserts and reads do not wait for), and dropped after
DETACH ... CONCURRENTLY.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import horizon
from .models import Event, IdentifyLink, RawPartition, SdkEvent

logger = logging.getLogger(__name__)

BLOCK = 1 << 40  # ids per partition
PERIOD = timedelta(days=7)
# What was unique on the unpartitioned tables and still is, within each partition (see ingest/models.py).
LOCAL_UNIQUE = {Event._meta.db_table: "event_id", IdentifyLink._meta.db_table: "link_id"}
RAW_MODELS = (Event, SdkEvent, IdentifyLink)
_LOCK_TIMEOUT = "5s"  # a DDL step that cannot get its lock gives up and is retried by the next run


@dataclass(frozen=True)
class Partition:
    table: str
    number: int
    lo: int | None  # None: from the lowest id (partition 0 holds the rows from before partitioning)
    hi: int
    opened_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.table}_p{self.number}"

    def ids(self) -> Q:
        """The rows of this partition, as a filter that the planner prunes to it."""
        return Q(id__lt=self.hi) if self.lo is None else Q(id__gte=self.lo, id__lt=self.hi)


def period_start(now: datetime) -> datetime:
    """Monday 00:00 UTC of `now`'s week: when the partition of a week begins."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


_BOUNDS_SQL = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
WHERE h.inhparent = %s::regclass
"""
_BOUND = re.compile(r"FROM \((?:MINVALUE|'?(-?\d+)'?)\) TO \('?(-?\d+)'?\)")


def _attached(cursor: Any, table: str) -> dict[int, Partition]:
    """The table's partitions by number, with their bounds as the catalog has them."""
    cursor.execute(_BOUNDS_SQL, [table])
    found = {}
    for name, bound in cursor.fetchall():
        match = _BOUND.search(bound)
        if match and name.startswith(f"{table}_p"):
            number = int(name[len(table) + 2 :])
            lo = int(match[1]) if match[1] is not None else None
            found[number] = Partition(table=table, number=number, lo=lo, hi=int(match[2]))
    return found


def _current(cursor: Any, table: str) -> Partition:
    """The partition new rows go to: the one holding the next id of the table's sequence."""
    following = horizon.last_id(cursor, table) + 1
    for partition in _attached(cursor, table).values():
        if (partition.lo is None or partition.lo <= following) and following < partition.hi:
            return partition
    raise RuntimeError(f"no partition of {table} holds id {following}")  # never: blocks are made before use


def partition_create(table: str, number: int) -> bool:
    """Create partition `number` of `table` unless it exists, in its own transaction. True if created."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"partition {table}"])
        if number in _attached(cursor, table):
            return False
        name = f"{table}_p{number}"
        cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        column = LOCAL_UNIQUE.get(table)
        if column:
            cursor.execute(f"CREATE UNIQUE INDEX {name}_{column}_uniq ON {name} ({column})")
        # Attaching builds the parent's indexes on the empty table and locks the parent only
        # against other DDL: inserts and reads go on.
        lo, hi = number * BLOCK, (number + 1) * BLOCK
        cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    logger.info("partition %s created", name)
    return True


def partitions_list(table: str) -> list[Partition]:
    """The table's partitions that took rows, oldest first, with when they did."""
    with connection.cursor() as cursor:
        attached = _attached(cursor, table)
    return [
        dataclasses.replace(attached[entry.number], opened_at=entry.opened_at, closed_at=entry.closed_at)
        for entry in RawPartition.objects.filter(table=table).order_by("number")
        if entry.number in attached
    ]


@dataclass(frozen=True)
class Floor:
    """Every row of a table with an id below `below` was received at or before `received_by`."""

    below: int
    received_by: datetime


# The registry as (number, opened_at, closed_at), newest first, per table, and when it was read. Kept
# briefly in each process: a stale copy only makes a floor lower than it could be (a cut adds a newer
# partition and closes one the copy thought open; a drop removes rows), never wrong.
_REGISTRY_SECONDS = 30.0
_registry: dict[str, tuple[float, list[tuple[int, datetime | None, datetime | None]]]] = {}


def registry_forget() -> None:
    _registry.clear()


def _registry_newest_first(table: str) -> list[tuple[int, datetime | None, datetime | None]]:
    now = time.monotonic()
    kept = _registry.get(table)
    if kept is None or now - kept[0] > _REGISTRY_SECONDS:
        entries = RawPartition.objects.filter(table=table).order_by("-number")
        kept = (now, list(entries.values_list("number", "opened_at", "closed_at")))
        _registry[table] = kept
    return kept[1]


def recent_floor(table: str, *, near: datetime, row_id: int | None = None) -> Floor | None:
    """An id bound that leaves out every week older than the one holding `row_id` (else the newest).

    The stream reads a page of the newest rows (or of those just below a cursor `row_id` received
    at `near`) with `id >= floor.below`: its statement is then planned over one or two partitions,
    not every week's, and a page whose rows were all received after `floor.received_by` is complete.
    The week before is included too when `near` is within two clock margins of its cut. None when
    the registry cannot bound anything (one partition, or one whose rows' times are not known).
    """
    entries = _registry_newest_first(table)
    start = 0
    if row_id is not None:
        start = next((i for i, (number, *_) in enumerate(entries) if number <= row_id // BLOCK), len(entries))
    if start < len(entries) - 1:
        opened_at = entries[start][1]
        if opened_at is not None and near - opened_at < 2 * _CLOCK_MARGIN:
            start += 1
    older = entries[start + 1 :]
    if not older or entries[start][0] == 0:  # (no older entries also when row_id is below them all)
        return None
    closed = [closed_at for _, _, closed_at in older if closed_at is not None]
    if len(closed) < len(older):
        return None
    return Floor(below=entries[start][0] * BLOCK, received_by=max(closed) + _CLOCK_MARGIN)


def partition_cut(table: str, *, now: datetime | None = None) -> int:
    """Send `table`'s new rows to the next block's partition from now on; returns its number.

    The partition is committed before the sequence moves (a sequence change is not transactional:
    were it to move first and the creation fail, inserts would find no partition).
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        current = _current(cursor, table)
    following = current.hi // BLOCK
    partition_create(table, following)
    partition_create(table, following + 1)  # the one after is always there ahead of time
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"partition {table}"])
        if _current(cursor, table).number == current.number:  # not cut by someone else meanwhile
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, current.hi - 1])
        # The partition closed here is registered if it was not (its rows' times unknown): the stream's
        # and retention's bounds count on every partition that took rows being in the registry.
        RawPartition.objects.get_or_create(table=table, number=current.number)
        RawPartition.objects.filter(table=table, number__lt=following, closed_at__isnull=True).update(closed_at=now)
        RawPartition.objects.get_or_create(table=table, number=following, defaults={"opened_at": now})
    registry_forget()
    logger.info("partition %s_p%s now takes new rows", table, following)
    return following


def partitions_maintain(*, now: datetime | None = None) -> dict[str, int]:
    """Hourly (beat): make the next partitions ahead, and cut each table at the start of a week.

    Returns each table's current partition number. Safe to run at any time, any number of times.
    """
    now = now or timezone.now()
    current: dict[str, int] = {}
    for model in RAW_MODELS:
        table = model._meta.db_table
        with connection.cursor() as cursor:
            partition = _current(cursor, table)
        partition_create(table, partition.hi // BLOCK)
        number = partition.number
        entry, _ = RawPartition.objects.get_or_create(table=table, number=number, defaults={"opened_at": now})
        if entry.opened_at is None or entry.opened_at < period_start(now):
            number = partition_cut(table, now=now)
            with connection.cursor() as cursor:
                # Autovacuum analyzes partitions, never the partitioned table: the planner's
                # whole-table statistics (the explorer's bucket estimates) are refreshed here, weekly.
                cursor.execute(f"ANALYZE {table}")
        current[table] = number
    return current


# A row is received before its partition closes (received_at is set before the insert draws its
# id); the margin covers web nodes and the worker whose clocks differ.
_CLOCK_MARGIN = timedelta(hours=1)


def received_since(queryset: QuerySet, since: datetime) -> QuerySet:
    """`queryset` (of a raw table) bounded to the partitions that can hold rows received since `since`.

    An id bound the planner prunes by: the admin's "received within" filters then read the BRIN and
    b-tree indexes of this week's partition only, not of every week's. The partitions closed before
    `since` (less the clock margin) come from the registry as this process keeps it (a stale copy
    knows fewer of them closed: its bound is lower, never wrong), so a page adds no statement.
    """
    before = since - _CLOCK_MARGIN
    closed = [
        number
        for number, _, closed_at in _registry_newest_first(queryset.model._meta.db_table)
        if closed_at is not None and closed_at < before
    ]
    # Partition n holds ids below (n + 1) * BLOCK (partition 0 of an upgraded table may end higher:
    # the bound is then lower than it could be, never wrong).
    floor = (max(closed) + 1) * BLOCK if closed else None
    # In the partition still open: when its newest row was received before `since` (less the margin),
    # no row below it can be in the window either, provided rows are stored in the request that
    # stamps them (received_at is set before the insert draws its id, and the margin covers the
    # request's time and the clocks' difference); the bound then starts past that row. An empty
    # window lies past the received_at statistics, where the planner prices the BRIN bitmap and a
    # full scan of the (company_id, received_at) b-tree alike and may read the whole b-tree (1,285
    # pages, 5 ms at 333,000 rows); past the newest row the primary key answers at once.
    rows = queryset.model._base_manager.using(queryset.db)
    if floor is not None:
        rows = rows.filter(id__gte=floor)
    newest = rows.order_by("-id").values_list("id", "received_at").first()
    if newest is not None and newest[1] < before:
        floor = newest[0] + 1
    return queryset.filter(id__gte=floor) if floor is not None else queryset


def partitions_cut_all(*, now: datetime | None = None) -> dict[str, int]:
    """Cut every raw table now, whatever the week (benchmarks and tests build weeks of data this way)."""
    return {model._meta.db_table: partition_cut(model._meta.db_table, now=now) for model in RAW_MODELS}


def companies_in(partition: Partition) -> list[int]:
    """The companies with rows in `partition`: a skip scan of its (company, received_at) index."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE c AS (
                SELECT min(company_id) AS id FROM {partition.name}
                UNION ALL
                SELECT (SELECT min(company_id) FROM {partition.name} WHERE company_id > c.id)
                FROM c WHERE c.id IS NOT NULL
            ) SELECT id FROM c WHERE id IS NOT NULL"""  # noqa: S608 (a partition name from the catalog)
        )
        return [row[0] for row in cursor.fetchall()]


def partition_drop(partition: Partition) -> None:
    """Detach (concurrently: ingest and readers go on) and drop a partition, then forget it.

    DETACH ... CONCURRENTLY cannot run inside a transaction: call this in autocommit.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        try:
            cursor.execute(
                "SELECT h.inhdetachpending FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
                " WHERE c.relname = %s",
                [partition.name],
            )
            attached = cursor.fetchone()
            if attached:  # FINALIZE completes a detach that an earlier run began and did not finish
                how = "FINALIZE" if attached[0] else "CONCURRENTLY"
                cursor.execute(f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name} {how}")
            cursor.execute(f"DROP TABLE IF EXISTS {partition.name}")
        finally:
            cursor.execute("RESET lock_timeout")
    RawPartition.objects.filter(table=partition.table, number=partition.number).delete()
    registry_forget()
    logger.info("partition %s dropped", partition.name)
