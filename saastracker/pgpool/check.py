"""The connection pool's check: a round trip only for a connection that sat idle a while.

After PostgreSQL restarts, every idle pooled connection is dead, and a request handed one fails
(or the /metrics scrape reads nothing). psycopg_pool's own `check_connection` catches that, at the
price of a round trip on every checkout, i.e. on every event. This one pays it only for a
connection unused for `IDLE_SECONDS`: under load connections never idle that long (no cost on the
hot path), and any restart takes longer than that, so every connection it killed is checked (and
replaced) before use. Installed by the backend in `base.py`.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg_pool import ConnectionPool

IDLE_SECONDS = 1.0


def check_if_idle(conn: Any) -> None:
    """Raise if `conn` is dead (the pool then discards it and hands out another)."""
    now = time.monotonic()
    last_used = getattr(conn, "_saastracker_last_checkout", None)
    conn._saastracker_last_checkout = now
    if last_used is None or now - last_used >= IDLE_SECONDS:
        ConnectionPool.check_connection(conn)
