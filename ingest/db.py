"""Prepared statements for the ingest hot path, on Django's own connection.

Django binds parameters client-side and keeps psycopg's statement preparation off (connection
poolers in transaction mode break prepared statements). The ingest services opt in for their
few fixed statements only: bound server-side and prepared once per connection, so PostgreSQL
parses and plans them once. Needs pgbouncer 1.21+ (`max_prepared_statements`) behind a pooler.
"""

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql.base import ServerBindingCursor

_PREPARE_ONLY_WHEN_ASKED = 2**31  # Django's own cursors bind client-side and never prepare anyway


class _PreparedCursor(ServerBindingCursor):
    """Server-side binding, every statement prepared on first use per connection."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


def prepared_cursor():
    """A prepared-statement cursor wrapped like any Django cursor: errors mapped, queries counted."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each `django.db.connection.x` is a thread-local lookup
    db.ensure_connection()
    db.validate_thread_sharing()
    pg = db.connection
    if pg.prepare_threshold is None:  # Django's default disables preparing; allow it only when asked
        pg.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
    with db.wrap_database_errors:
        raw = _PreparedCursor(pg)
    return db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)
