"""Django's PostgreSQL backend; its psycopg pool checks a connection that sat idle before lending it.

Django builds the pool with `check=` either psycopg_pool's round trip on every checkout
(CONN_HEALTH_CHECKS) or none, and refuses a `check` in `OPTIONS["pool"]`. This wrapper hands the
pool `check_if_idle` instead: the same protection after a restart, without the round trip per event.
"""

from typing import Any

from django.db.backends.postgresql import base
from psycopg_pool.base import AttemptWithBackoff

from .check import check_if_idle

# While PostgreSQL is down the pool retries each lost connection after 1 s, 2 s, 4 s, ... (psycopg_pool's
# backoff): after a 10 s outage it would wait ~6 s more before reconnecting, answering 503 meanwhile.
# Retrying every second (a refused connect is cheap) has the pool full again a second after it is back.
AttemptWithBackoff.DELAY_BACKOFF = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        if pool is not None and not getattr(pool, "_saastracker_checked", False):
            # Before the pool opens (Django opens it on the first connection, after this): the
            # check it was built with (none) is replaced once, by the idle check.
            pool._check = check_if_idle
            pool._saastracker_checked = True
        return pool
