"""Exact distinct sets as Roaring bitmaps of dense per-app ids, and the dictionary behind them.

Every user key, org id, session id and (org, user) / (org, session) pair of an app gets a dense
integer id (analytics_denseid, assigned by the fold under its per-app lock, so ids commit in order
and never change). Rollups store bitmaps of those ids; a distinct count over a window is the
cardinality of a union, computed here in Python (pyroaring) from a handful of small bytea values.

Both directions are cached per process: key -> id for the fold, and pair id -> org id / org id ->
customer_org_id for the reads. A cache is trusted only while the id at its highest entry still has
the same key in the database (checked once per chunk or request), so a truncated table (tests) or
an app's deletion cannot leave wrong ids behind; `clear_caches()` also runs after every flush.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable
from typing import Any

from pyroaring import BitMap

USER = 1
ORG = 2
SESSION = 3
ORG_USER = 4
ORG_SESSION = 5
PATH = 6
KINDS = (USER, ORG, SESSION, ORG_USER, ORG_SESSION, PATH)

CACHE_MAX_KEYS = 2_000_000  # per (app, kind): beyond it the fold cache starts over (sessions churn)


def load(raw: bytes | memoryview | None) -> BitMap:
    """A stored bitmap ('' = empty)."""
    if not raw:
        return BitMap()
    return BitMap.deserialize(bytes(raw))


def dump(bitmap: BitMap) -> bytes:
    bitmap.run_optimize()
    return bitmap.serialize()


def union(raws: Iterable[bytes | memoryview | None]) -> BitMap:
    maps = [load(r) for r in raws if r]
    if not maps:
        return BitMap()
    if len(maps) == 1:
        return maps[0]
    return BitMap.union(*maps)


def load_counts(raw: bytes | memoryview | None) -> dict[int, int]:
    """A stored sparse counter (dense id -> count): n ids then n counts, uint32 little-endian."""
    if not raw:
        return {}
    data = bytes(raw)
    half = len(data) // 2
    ids, counts = array("I"), array("I")
    ids.frombytes(data[:half])
    counts.frombytes(data[half:])
    return dict(zip(ids, counts, strict=True))


def dump_counts(counts: dict[int, int]) -> bytes:
    keys = sorted(counts)
    return array("I", keys).tobytes() + array("I", [counts[k] for k in keys]).tobytes()


# --- Fold side: key -> dense id --------------------------------------------------------------------


class _KeyCache:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ids: dict[Any, int] = {}
        self.top = 0  # highest id in `ids`
        self.top_key = ""


_fold_cache: dict[tuple[int, int], _KeyCache] = {}


def clear_caches(**_: Any) -> None:
    """Forget every cached id (tests flush the tables; also the post_migrate signal)."""
    _fold_cache.clear()
    _read_cache.clear()


def _validate(cursor: Any, app: int, caches: dict[int, Any]) -> None:
    """Drop a cache whose highest id no longer names the same key (table truncated or rebuilt)."""
    checked = [(kind, c) for kind, c in caches.items() if c.top]
    if not checked:
        return
    cursor.execute(
        "SELECT kind, key FROM analytics_denseid WHERE application_id = %s AND (kind, dense) IN"
        " (SELECT * FROM unnest(%s::smallint[], %s::int[]))",
        [app, [k for k, _ in checked], [c.top for _, c in checked]],
    )
    present = dict(cursor.fetchall())
    for kind, cache in checked:
        if present.get(kind) != cache.top_key:
            caches[kind].reset()


class Dictionary:
    """Dense ids of one fold transaction. New ids reach the process cache only after commit."""

    def __init__(self, cursor: Any, app: int, *, use_cache: bool) -> None:
        self.cursor = cursor
        self.app = app
        self.use_cache = use_cache
        self.new: dict[int, dict[str, int]] = {}
        if use_cache:
            caches = {kind: _fold_cache.setdefault((app, kind), _KeyCache()) for kind in KINDS}
            _validate(cursor, app, caches)

    def ids(self, kind: int, keys: Iterable[Hashable]) -> dict[Any, int]:
        """Id of each key, assigning new ones. Pair kinds take (org id, user or session id) tuples."""
        pair = kind in (ORG_USER, ORG_SESSION)
        cache = _fold_cache.get((self.app, kind)) if self.use_cache else None
        known = cache.ids if cache is not None else {}
        out: dict[Any, int] = {}
        misses: list[Any] = []
        for key in keys:
            value = known.get(key)
            if value is None:
                misses.append(key)
            else:
                out[key] = value
        if not misses:
            return out
        texts = [f"{k[0]}:{k[1]}" for k in misses] if pair else misses
        back = dict(zip(texts, misses, strict=True)) if pair else None
        cursor = self.cursor
        cursor.execute(
            "SELECT key, dense FROM analytics_denseid WHERE application_id = %s AND kind = %s AND key = ANY(%s)",
            [self.app, kind, texts],
        )
        found = {(back[k] if back else k): v for k, v in cursor.fetchall()}
        out.update(found)
        if cache is not None:
            self._remember(cache, found, pair)
        new = [k for k in misses if k not in found]
        if new:
            cursor.execute(
                "SELECT coalesce(max(dense), 0) FROM analytics_denseid WHERE application_id = %s AND kind = %s",
                [self.app, kind],
            )
            first = cursor.fetchone()[0] + 1
            dense = list(range(first, first + len(new)))
            cursor.execute(
                "INSERT INTO analytics_denseid (application_id, kind, key, dense, org)"
                " SELECT %s, %s, k, d, o FROM unnest(%s::varchar[], %s::int[], %s::int[]) AS u(k, d, o)",
                [
                    self.app,
                    kind,
                    [f"{k[0]}:{k[1]}" for k in new] if pair else new,
                    dense,
                    [k[0] for k in new] if pair else [None] * len(new),
                ],
            )
            assigned = dict(zip(new, dense, strict=True))
            out.update(assigned)
            self.new.setdefault(kind, {}).update(assigned)
        return out

    @staticmethod
    def _remember(cache: _KeyCache, ids: dict[Any, int], pair: bool) -> None:
        if len(cache.ids) + len(ids) > CACHE_MAX_KEYS:
            cache.reset()
        cache.ids.update(ids)
        for key, value in ids.items():
            if value > cache.top:
                cache.top, cache.top_key = value, (f"{key[0]}:{key[1]}" if pair else key)

    def committed(self) -> None:
        """The transaction committed: its new ids are now everyone's."""
        if not self.use_cache:
            return
        for kind, ids in self.new.items():
            cache = _fold_cache.setdefault((self.app, kind), _KeyCache())
            self._remember(cache, ids, kind in (ORG_USER, ORG_SESSION))


# --- Read side: dense id -> org ----------------------------------------------------------------------


class _Reverse:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_org: dict[int, BitMap] = {}  # pair kinds: org id -> its pair ids
        self.keys: dict[int, str] = {}  # ORG, PATH: id -> customer_org_id / path
        self.top = 0
        self.top_key = ""


_read_cache: dict[tuple[int, int], _Reverse] = {}


def reverse(cursor: Any, app: int, kinds: Iterable[int]) -> dict[int, _Reverse]:
    """Up-to-date reverse maps of these kinds (ORG: keys; pair kinds: pairs per org), loading only new ids."""
    caches = {kind: _read_cache.setdefault((app, kind), _Reverse()) for kind in kinds}
    _validate(cursor, app, caches)
    cursor.execute(
        "SELECT k, (SELECT coalesce(max(dense), 0) FROM analytics_denseid WHERE application_id = %s AND kind = k)"
        " FROM unnest(%s::smallint[]) AS k",
        [app, list(caches)],
    )
    for kind, top in cursor.fetchall():
        cache = caches[kind]
        if top <= cache.top:
            continue
        cursor.execute(
            "SELECT dense, key, coalesce(org, 0) FROM analytics_denseid"
            " WHERE application_id = %s AND kind = %s AND dense > %s ORDER BY dense",
            [app, kind, cache.top],
        )
        rows = cursor.fetchall()
        if not rows:
            continue
        if kind in (ORG, PATH):
            cache.keys.update((dense, key) for dense, key, _ in rows)
        else:
            grouped: dict[int, list[int]] = {}
            for dense, _, org in rows:
                grouped.setdefault(org, []).append(dense)
            for org, ids in grouped.items():
                cache.by_org.setdefault(org, BitMap()).update(ids)
        cache.top, cache.top_key = rows[-1][0], rows[-1][1]
    return caches


def org_ids(cursor: Any, app: int, customer_org_ids: Iterable[str]) -> dict[str, int]:
    """Dense ids of these orgs (absent: never folded)."""
    wanted = list(customer_org_ids)
    if not wanted:
        return {}
    cursor.execute(
        "SELECT key, dense FROM analytics_denseid WHERE application_id = %s AND kind = %s AND key = ANY(%s)",
        [app, ORG, wanted],
    )
    return dict(cursor.fetchall())
