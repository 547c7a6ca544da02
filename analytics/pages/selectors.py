"""Reads that only the pages need; every metric comes from `analytics.selectors` (one definition)."""

from django.core.cache import cache
from django.db import connection

from apps_registry.models import Application

from ..reads import timed_read

ENVIRONMENTS_SAMPLE = 20_000
ENVIRONMENTS_CACHE_SECONDS = 60


@timed_read
def environments_list(*, app: Application) -> list[str]:
    """The environments of the app's recent events, for the filter's choices.

    A sample of the newest rows through the (application, occurred_at) index, cached for a minute,
    so the cost does not grow with the table; an environment not seen lately can still be typed
    into the URL.
    """
    key = f"pages:environments:{app.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT environment FROM (
                SELECT environment FROM ingest_event
                WHERE application_id = %s ORDER BY occurred_at DESC LIMIT %s
            ) recent WHERE environment IS NOT NULL AND environment <> '' ORDER BY environment
            """,
            [app.pk, ENVIRONMENTS_SAMPLE],
        )
        environments = [row[0] for row in cursor.fetchall()]
    cache.set(key, environments, ENVIRONMENTS_CACHE_SECONDS)
    return environments
