"""Figures derived from a subscriptions snapshot, computed once per process and reused.

A subscriptions import replaces the app's whole set and records its `Import` in the same transaction,
so the app's latest applied subscriptions import names the set a read sees: its id and `xmin` (the
writing transaction, never reused, so a rolled-back test's id cannot alias another set) are the
snapshot key. What is computed from one set never changes, so it is cached under that key: a new
import is a new key, and nothing is ever invalidated (old keys age out of the LRU).

Two levels. In process: an entry is a dict of some 10,000 `Decimal`s; a hit is a dict lookup
(CACHE_ENTRIES bounds the memory). Shared: the import computes what the readers need right after it
(the sets active now, at the month's start and a year ago, the monthly flows, each org's first paid
start) from the rows it validated and writes them as `SnapshotPart` rows in its own transaction
(`parts_replace`), money in integer cents; a process's first read of a snapshot decodes a part
(`part_read`, milliseconds) instead of scanning the subscriptions (hundreds of milliseconds while the
next import writes, bench/README.md). An instant no part covers is computed by the reader, as before.

Consistency: `with_snapshot` computes an entry and reads the key in one SQL statement, so an entry is
filed under the set it was computed from even outside a REPEATABLE READ transaction; a part is read
under its import's id and `xmin` and commits with it; a reader looks entries up under the key its own
transaction sees (`snapshot_key`): the old set or the new, never half.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any

from django.db import connection

from .models import Import

CACHE_ENTRIES = 32

SnapshotKey = tuple[int, str]

_SNAPSHOT_SQL = (
    "SELECT id, xmin::text AS xid FROM revenue_import WHERE application_id = %s AND kind = %s AND status = %s"
    " ORDER BY id DESC LIMIT 1"
)
_lock = threading.Lock()
_entries: OrderedDict[tuple, Any] = OrderedDict()


def _snapshot_params(app_id: int) -> list:
    return [app_id, Import.Kind.SUBSCRIPTIONS.value, Import.Status.APPLIED.value]


def snapshot_key(app_id: int) -> SnapshotKey | None:
    """The key of the subscription set this connection sees now (None: never imported)."""
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_SQL, _snapshot_params(app_id))
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def with_snapshot(app_id: int, sql: str, params: list, *, order_by: str = "") -> tuple[SnapshotKey | None, list]:
    """Run `sql` and read the snapshot key in one statement (one database snapshot): (key, rows).

    `sql`'s first column must not be null; `order_by` names its output columns.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT snap.id, snap.xid, q.* FROM (SELECT 1) AS one LEFT JOIN ({_SNAPSHOT_SQL}) AS snap ON true"  # noqa: S608 - constant SQL
            f" LEFT JOIN ({sql}) AS q ON true{' ORDER BY ' + order_by if order_by else ''}",
            [*_snapshot_params(app_id), *params],
        )
        rows = cursor.fetchall()
    key = (rows[0][0], rows[0][1]) if rows and rows[0][0] is not None else None
    return key, [row[2:] for row in rows if row[2] is not None]


def lookup(app_id: int, key: SnapshotKey, name: str, accept: Callable[[Hashable], bool] | None = None) -> Any:
    """The cached `name` of this snapshot whose discriminator `accept`s (None: not cached)."""
    with _lock:
        for entry, value in _entries.items():
            if entry[:3] == (app_id, key, name) and (accept is None or accept(entry[3])):
                _entries.move_to_end(entry)
                return value
    return None


def store(app_id: int, key: SnapshotKey, name: str, value: Any, discriminator: Hashable = None) -> None:
    with _lock:
        entry = (app_id, key, name, discriminator)
        _entries[entry] = value
        _entries.move_to_end(entry)
        while len(_entries) > CACHE_ENTRIES:
            _entries.popitem(last=False)


_PART_SQL = (
    "SELECT p.since, p.until, p.payload FROM revenue_snapshotpart AS p JOIN revenue_import AS i ON i.id = p.snapshot_id"
    " WHERE p.snapshot_id = %s AND i.xmin::text = %s AND p.name = %s"
)
_COVERS = " AND (p.since IS NULL OR p.since <= %s) AND (p.until IS NULL OR %s < p.until)"

Part = tuple[str, datetime | None, datetime | None, dict]  # name, since, until, payload


def part_read(
    key: SnapshotKey, name: str, at: datetime | None = None
) -> tuple[datetime | None, datetime | None, dict] | None:
    """The part `name` its import wrote for snapshot `key` (covering `at` when given): (since, until, payload)."""
    params: list[int | str | datetime] = [key[0], key[1], name]
    sql = _PART_SQL
    if at is not None:
        sql, params = sql + _COVERS, [*params, at, at]
    with connection.cursor() as cursor:
        cursor.execute(sql + " LIMIT 1", params)
        row = cursor.fetchone()
    return (row[0], row[1], json.loads(row[2])) if row else None


def cached(
    app_id: int,
    key: SnapshotKey,
    name: str,
    decode: Callable[[datetime | None, datetime | None, dict], Any],
    *,
    at: datetime | None = None,
    accept: Callable[[Hashable], bool] | None = None,
) -> Any:
    """This process's entry `name` of snapshot `key` (one `accept`ed), else the part its import wrote
    (covering `at` when given), decoded and kept in this process. None: neither has it."""
    if (hit := lookup(app_id, key, name, accept)) is not None:
        return hit
    if (part := part_read(key, name, at)) is None:
        return None
    since, until, payload = part
    value = decode(since, until, payload)
    store(app_id, key, name, value, (since, until) if at is not None else None)
    return value


def parts_replace(*, app_id: int, import_id: int, parts: list[Part]) -> None:
    """In the import's transaction: its parts, and none of the app's earlier snapshots (readers of those
    in an open transaction still see them; nobody looks them up after)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM revenue_snapshotpart"
            " WHERE snapshot_id IN (SELECT id FROM revenue_import WHERE application_id = %s)",
            [app_id],
        )
        cursor.executemany(
            "INSERT INTO revenue_snapshotpart (snapshot_id, name, since, until, payload) VALUES (%s, %s, %s, %s, %s)",
            [
                (import_id, name, since, until, json.dumps(payload, separators=(",", ":")))
                for name, since, until, payload in parts
            ],
        )


def cache_clear() -> None:
    """Forget this process's entries: what a new process starts with (tests, benches)."""
    with _lock:
        _entries.clear()
