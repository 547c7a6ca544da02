"""Every analytics read a person or program can trigger runs under `ANALYTICS_QUERY_TIMEOUT`.

One tenant's heavy read must not keep PostgreSQL busy for minutes after its client gave up (issue 18,
item 2). `analytics_read()` opens a transaction whose statements carry the explorer's settings
(a transaction-local `statement_timeout`, no JIT, `work_mem`): the server itself cancels a statement
past the limit, and the read also stops between statements once the whole budget is spent. Either
way the caller gets the explorer's answer, an `ApiError` 504 `query_timeout` (a page shows its
error state), never a 503 "database unavailable" logged at ERROR.

Use it around any read, or as a decorator:

    with analytics_read():
        rows = ...

    @timed_read
    def revenue_get(*, app, ...): ...

Nested uses share the outermost budget. Plain `SELECT`s take no row locks, so ingest never waits on them.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import psycopg
from django.db import OperationalError, connection, transaction

from ingest.errors import ApiError

from .query.engines import postgres_settings_apply, timeout_seconds

P = ParamSpec("P")
T = TypeVar("T")

# The monotonic time by which the current read must be done (None: not inside `analytics_read`).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("analytics_read_deadline", default=None)


def read_timed_out() -> ApiError:
    """The 504 of a read past the limit (the explorer's code, so clients handle both alike)."""
    limit = timeout_seconds()
    return ApiError(
        status_code=504,
        code="query_timeout",
        message=(
            f"The read ran longer than {limit:g} s (ANALYTICS_QUERY_TIMEOUT) and was cancelled; "
            "narrow the window or the filters, or retry later."
        ),
    )


def read_budget_check() -> None:
    """Between statements of a long read: a 504 once the read's whole budget is spent."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise read_timed_out()


@contextmanager
def analytics_read() -> Iterator[None]:
    """Run the reads inside under the analytics statement timeout; a cancelled statement is a 504."""
    if _deadline.get() is not None:  # already inside one: the outer budget holds
        yield
        return
    token = _deadline.set(time.monotonic() + timeout_seconds())
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                postgres_settings_apply(cursor, is_local=True)
            yield
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.QueryCanceled):
            raise read_timed_out() from exc
        raise
    finally:
        _deadline.reset(token)


def timed_read(func: Callable[P, T]) -> Callable[P, T]:
    """Decorator form of `analytics_read` for a selector."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with analytics_read():
            return func(*args, **kwargs)

    return wrapper
