"""Group commit: concurrent requests of one process share one INSERT and one commit.

Under load most of the cost of a durable single-row insert is per statement and per transaction
(round trip, executor start-up, commit record, WAL flush wait), not per row. A request thread
queues its row and waits; if no flush is running it becomes the leader, takes every queued row
(up to `max_rows`), writes them with ONE fixed-text statement on its own thread's connection
(autocommit: one round trip, one commit) and then wakes each follower with the outcome. Rows
queued meanwhile go to the next leader: the first waiter whose row was not taken. There is no
timer, so a lone request is written at once and low-load latency is unchanged.

Every caller returns only after the commit that holds its row. If the group statement fails
with an error the server raised for the statement itself (a bad value, a constraint), nothing
was committed, so each row is retried alone by its own thread on its own connection: one bad row
does not fail its neighbours. A connection-level error leaves the outcome in doubt: the commit
may have landed before the connection died. The leader then reconnects (bounded, see
`ingest.db.in_doubt_lookup`) and asks `stored` which rows are there: those callers return as
stored, the others raise the connection error (503: not stored, a retry is safe).

Inside an atomic block the row is written directly on the caller's connection: it must commit
or roll back with the caller's transaction, never with another thread's.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from saastracker.metrics import group_commit_record

from .db import connection_lost, write_outcome_record

logger = logging.getLogger(__name__)

CursorFactory = Callable[[], AbstractContextManager[Any]]
# Given rows whose commit is in doubt: which of them are stored (one bool per row), or None if unknown.
StoredLookup = Callable[[list[Sequence[Any]]], list[bool] | None]


class _Waiter:
    __slots__ = ("done", "error", "lead", "retry_alone", "row", "stored")

    def __init__(self, row: Sequence[Any]) -> None:
        self.row = row
        self.done = threading.Event()
        self.lead = False  # set when woken to flush the rows left in the queue
        self.retry_alone = False  # the group statement was rejected: write this row by itself
        self.stored = False  # set only after the commit that holds the row
        self.error: BaseException | None = None


class GroupCommit:
    """Writes rows with `statement`, whose one parameter is the rows as a JSON array of arrays.

    The rows are encoded with orjson (numbers, strings, booleans, None, UUIDs and aware datetimes
    as ISO 8601); the statement reads them with e.g. `jsonb_array_elements(%s::jsonb)` and casts
    each `r->>i`. One text parameter is far cheaper for the client than an array per column.

    `cursor` returns a cursor context manager for the calling thread's connection; the leader
    calls it in its own thread. `statement` must be autocommitted (one statement, one commit).
    `stored` resolves an in-doubt commit after a connection error (without it, every caller of
    the group gets the error).
    """

    def __init__(
        self,
        *,
        statement: str,
        cursor: CursorFactory,
        stored: StoredLookup | None = None,
        max_rows: int = 64,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        self.statement = statement
        self.cursor = cursor
        self.stored = stored
        self.max_rows = max_rows
        self.using = using
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._flushing = False

    def write(self, row: Sequence[Any]) -> None:
        """Return once `row` is committed; raise what writing it raised otherwise."""
        if connections[self.using].in_atomic_block:
            self._execute([row])
            return
        waiter = _Waiter(row)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._flushing
            self._flushing = True
        if not lead:
            waiter.done.wait()
            if waiter.lead:  # our row was not taken by the last flush: we flush the queue now
                waiter.done.clear()
                lead = True
        if lead:
            self._flush()  # FIFO: the leader's own row is always first in the queue, so in this flush
        if waiter.retry_alone:
            self._write_alone(waiter)
        elif not waiter.stored:
            exc = waiter.error
            if exc is None:
                raise DatabaseError("the group holding this row was not written")
            raise type(exc)(*exc.args) from exc  # one exception object per thread

    def _flush(self) -> None:
        with self._lock:
            group = self._queue[: self.max_rows]
            del self._queue[: self.max_rows]
        try:
            self._execute([waiter.row for waiter in group])
            group_commit_record(len(group))
            for waiter in group:
                waiter.stored = True
        except Exception as exc:
            if connection_lost(exc):  # the connection failed: outcome in doubt
                self._in_doubt_resolve(group, exc)
                return
            # the server rejected the statement: nothing of it is committed
            write_outcome_record(ok=False, exc=exc)
            if len(group) == 1:
                raise
            for waiter in group:
                waiter.retry_alone = True
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._flushing = False
            for waiter in group[1:]:  # group[0] is the leader itself
                waiter.done.set()

    def _write_alone(self, waiter: _Waiter) -> None:
        try:
            self._execute([waiter.row])
        except Exception as exc:
            if not connection_lost(exc):
                write_outcome_record(ok=False, exc=exc)
                raise
            self._in_doubt_resolve([waiter], exc)
            if not waiter.stored:
                raise

    def _in_doubt_resolve(self, group: list[_Waiter], exc: BaseException) -> None:
        """Each caller whose row did land returns as stored; the others get the connection error."""
        write_outcome_record(ok=False, exc=exc)
        found = None
        if self.stored is not None:
            try:
                found = self.stored([waiter.row for waiter in group])
            except Exception:  # never worse than not knowing: those callers get the connection error
                logger.exception("could not resolve an in-doubt group commit")
        for waiter, stored in zip(group, found or [False] * len(group), strict=True):
            if stored:
                waiter.stored = True
            else:
                waiter.error = exc

    def _execute(self, rows: list[Sequence[Any]]) -> None:
        with self.cursor() as cursor:
            cursor.execute(self.statement, [orjson.dumps(rows).decode()])
        write_outcome_record(ok=True)
