"""How far a table's ids are final: the horizon that cursor-driven consumers (export, fold) may pass.

Ids come from a sequence when a row is inserted, and commits do not come in id order: a transaction
holding id 100 may commit after one holding id 101. A cursor that passed 101 while 100 was in flight
would skip 100 for ever. So at each look the table's sequence is read, then the transactions holding
a write lock on the table (`pg_locks`, RowExclusiveLock: taken before any id is drawn and held until
commit or rollback) are noted. Once none of them is running any more, every id up to the sequence
value read is committed or gone, and the cursor may pass it. Virtual transaction ids are used, not
`pg_snapshot_xmin`: a transaction draws its id before it has an xid (the xid comes with the first row
written), so an xid horizon could pass an id still in flight.

Ingest pays nothing for this: no trigger, no extra row, no extra index. A quiet table's horizon is
its current sequence value; under load it trails by one look (milliseconds).
"""

from __future__ import annotations

from typing import Any, Protocol

# Who may still commit a row into a table: transactions holding its write lock (not this one). The
# database is named too: relation oids repeat across databases made from one template.
_HOLDERS_SQL = """
SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks
WHERE locktype = 'relation' AND relation = %s::regclass AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class HorizonState(Protocol):
    """A consumer's cursor row (ingest.ExportCursor, analytics.FoldCursor), locked by the caller."""

    safe_upto: int  # no row with an id up to this can still commit
    horizon_id: int  # the sequence value read at the last look
    horizon_holders: list[str]  # the writers running then


def last_id(cursor: Any, db_table: str) -> int:
    """The last id the table's sequence handed out (0 before the first)."""
    cursor.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id'))", [db_table])
    return cursor.fetchone()[0] or 0


def advance(cursor: Any, db_table: str, state: HorizonState) -> None:
    """Move `state.safe_upto` as far as no transaction can still commit a row below it (module docstring)."""
    last = last_id(cursor, db_table)  # read before the lock holders: whoever drew an id up to it holds the lock
    cursor.execute(_HOLDERS_SQL, [db_table])
    holders = cursor.fetchone()[0]
    if set(state.horizon_holders) & set(holders):
        return  # the horizon noted last time is not complete yet: keep it (a new one would never complete)
    state.safe_upto = max(state.safe_upto, state.horizon_id, last if not holders else 0)
    state.horizon_id, state.horizon_holders = last, holders
