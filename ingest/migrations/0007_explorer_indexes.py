# The Event explorer at 10 M events (issue 11). Its indexes (`event_app_occurred_cover`, an index-only
# scan for counts and distinct users; `sdkevent_app_occurred`) came with 0004; this one follows the
# explorer's bucket expressions, which moved from date_trunc(... AT TIME ZONE 'UTC') to date_bin for
# hours, days and weeks (analytics/query/compiler.py, POSTGRES_BUCKETS). Statistics on the exact
# expressions tell the planner a 30-day daily query has ~30 buckets, not one per row (without them it
# sorts millions of rows instead of hash-aggregating a few hundred groups). Statistics cost inserts
# nothing: ANALYZE reads them, ingest never does. No index is added here, so ingest pays nothing new.

from django.db import migrations

_TABLES = ("ingest_event", "ingest_sdkevent")
_BINS = {
    "hour": "date_bin('1 hour'::interval, occurred_at, '2000-01-03 00:00:00+00'::timestamptz)",
    "day": "date_bin('1 day'::interval, occurred_at, '2000-01-03 00:00:00+00'::timestamptz)",
    "week": "date_bin('7 days'::interval, occurred_at, '2000-01-03 00:00:00+00'::timestamptz)",
}
_CREATE = "; ".join(
    f"CREATE STATISTICS IF NOT EXISTS {table}_bin_{unit} ON ({expression}) FROM {table}"
    for table in _TABLES
    for unit, expression in _BINS.items()
)
_DROP = "; ".join(f"DROP STATISTICS IF EXISTS {table}_bin_{unit}" for table in _TABLES for unit in _BINS)
# 0004's statistics on the date_trunc form of the same buckets: no query uses them any more (months keep theirs).
_OLD_CREATE = "; ".join(
    f"CREATE STATISTICS IF NOT EXISTS {table}_bucket_{unit} "
    f"ON (date_trunc('{unit}', occurred_at AT TIME ZONE 'UTC')) FROM {table}"
    for table in _TABLES
    for unit in _BINS
)
_OLD_DROP = "; ".join(f"DROP STATISTICS IF EXISTS {table}_bucket_{unit}" for table in _TABLES for unit in _BINS)


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0006_admin_scale_indexes"),
    ]

    operations = [
        migrations.RunSQL(_CREATE, _DROP),
        migrations.RunSQL(_OLD_DROP, _OLD_CREATE),
    ]
