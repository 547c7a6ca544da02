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
does not fail its neighbours. A connection-level error (outcome unknown) is raised in every
caller of the group, as the single insert would raise it: the client gets a 503 and retries.

Inside an atomic block the row is written directly on the caller's connection: it must commit
or roll back with the caller's transaction, never with another thread's.
"""

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

from saastracker.metrics import group_commit_record

CursorFactory = Callable[[], AbstractContextManager[Any]]


class _Waiter:
    __slots__ = ("done", "error", "lead", "retry_alone", "row", "stored")

    def __init__(self, row: Sequence[Any]):
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
    """

    def __init__(self, *, statement: str, cursor: CursorFactory, max_rows: int = 64, using: str = DEFAULT_DB_ALIAS):
        self.statement = statement
        self.cursor = cursor
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
            self._execute([row])
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
        except (OperationalError, InterfaceError) as exc:  # the connection failed: outcome unknown
            for waiter in group:
                waiter.error = exc
        except Exception:  # the server rejected the statement: nothing of it is committed
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

    def _execute(self, rows: list[Sequence[Any]]) -> None:
        with self.cursor() as cursor:
            cursor.execute(self.statement, [orjson.dumps(rows).decode()])
