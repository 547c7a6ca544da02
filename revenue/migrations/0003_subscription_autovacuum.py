"""Vacuum the subscriptions after each large snapshot replace, not after several.

An import deletes and rewrites an app's whole set. With the default scale factor (20 % of the table)
the dead rows of several imports pile up before autovacuum comes, and every scan that fills the
snapshot cache reads them (bench/README.md, Revenue: 2.8 M dead rows beside 100,000 live ones made a
scan 10 times slower). A fixed threshold vacuums after any import of 10,000 rows or more.
"""

from django.db import migrations

SETTINGS = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_threshold")


class Migration(migrations.Migration):
    dependencies = [("revenue", "0002_import_counts_errors_may_be_empty")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE revenue_subscription"
            " SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000)",
            f"ALTER TABLE revenue_subscription RESET ({', '.join(SETTINGS)})",
        )
    ]
