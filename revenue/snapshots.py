"""Figures derived from a subscriptions snapshot, computed once per process and reused.

A subscriptions import replaces the app's whole set and records its `Import` in the same transaction,
so the app's latest applied subscriptions import names the set a read sees: its id and `xmin` (the
writing transaction, never reused, so a rolled-back test's id cannot alias another set) are the
snapshot key. What is computed from one set never changes, so it is cached under that key: a new
import is a new key, and nothing is ever invalidated (old keys age out of the LRU).

In process rather than Redis: an entry is a dict of some 10,000 `Decimal`s; a hit here is a dict
lookup, where Redis would cost a round trip and unpickling the whole map on every read. Entries
need no sharing or invalidation (each process computes each at most once per snapshot), and
CACHE_ENTRIES bounds the memory.

Consistency: `with_snapshot` computes an entry and reads the key in one SQL statement, so an entry is
filed under the set it was computed from even outside a REPEATABLE READ transaction; a reader looks
entries up under the key its own transaction sees (`snapshot_key`): the old set or the new, never half.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
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
