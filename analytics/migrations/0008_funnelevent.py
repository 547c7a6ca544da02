# Funnels at 10 M events (issue 21): a narrow copy of every counted event, kept by the fold.
#
# The table is created here rather than by Django: its rows have no id (two equal events are two
# rows) and no foreign key checked per inserted row (the fold inserts ~100,000 per chunk). The
# index leads with what a funnel step selects (app, source, name, time) and INCLUDEs what the funnel
# reads, so a step is one index-only range scan. The table is insert-only: autovacuum is asked to
# visit it every 1 % of new rows (default 20 %), so the visibility map stays current and the scans
# stay index-only on recent days.
#
# Backfill: every row the fold already folded (neither queued nor past the fold's cursor, which the
# fold owns: analytics.fold.unfolded_sql, written out here as a migration cannot import it), with the
# dense ids the fold gave its user and org. It runs under the fold lock taken alone, so no fold
# commits in between. Workers still running the previous code fold without writing this table:
# stop them for the deploy, or run `manage.py analytics_rebuild --app UUID` afterwards for each app
# (the rebuild refills this table). Rows folded before migration 0003 whose app was never rebuilt
# have no dense ids and are not copied (the rebuild 0003 asks for fixes those too).

import django.db.models.deletion
from django.db import migrations, models

CREATE_SQL = """
CREATE TABLE analytics_funnelevent (
    application_id bigint NOT NULL,
    source smallint NOT NULL,
    name varchar(255) NOT NULL,
    environment varchar(32) NOT NULL,
    occurred_us bigint NOT NULL,
    user_dense integer NOT NULL,
    org_dense integer
) WITH (autovacuum_vacuum_insert_scale_factor = 0.01);
SELECT pg_advisory_xact_lock(720010);
INSERT INTO analytics_funnelevent (application_id, source, name, environment, occurred_us, user_dense, org_dense)
SELECT e.application_id, 1, e.event, coalesce(e.environment, ''), (EXTRACT(EPOCH FROM e.occurred_at) * 1000000)::bigint,
    u.dense, o.dense
FROM ingest_event e
JOIN analytics_denseid u ON u.application_id = e.application_id AND u.kind = 1 AND u.key = e.user_hash
LEFT JOIN analytics_denseid o ON o.application_id = e.application_id AND o.kind = 2 AND o.key = e.customer_org_id
WHERE e.id <= coalesce((SELECT queued_upto FROM analytics_foldcursor WHERE source = 1), 0)
    AND e.id NOT IN (SELECT unnest(event_ids) FROM analytics_foldqueue WHERE source = 1);
INSERT INTO analytics_funnelevent (application_id, source, name, environment, occurred_us, user_dense, org_dense)
SELECT e.application_id, 2, e.event_name, '', (EXTRACT(EPOCH FROM e.occurred_at) * 1000000)::bigint, u.dense, NULL
FROM ingest_sdkevent e
JOIN analytics_denseid u ON u.application_id = e.application_id AND u.kind = 1
    AND u.key = coalesce(e.user_id, e.anon_id::text)
WHERE e.consent_analytics AND e.id <= coalesce((SELECT queued_upto FROM analytics_foldcursor WHERE source = 2), 0)
    AND e.id NOT IN (SELECT unnest(event_ids) FROM analytics_foldqueue WHERE source = 2);
CREATE INDEX funnelevent_step ON analytics_funnelevent (application_id, source, name, occurred_us)
    INCLUDE (user_dense, org_dense, environment);
ANALYZE analytics_funnelevent;
"""
DROP_SQL = "DROP TABLE IF EXISTS analytics_funnelevent"


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0007_fold_cursor"),
        ("apps_registry", "0001_initial"),
        ("ingest", "0008_drop_fold_pending"),
    ]

    operations = [
        migrations.CreateModel(
            name="FunnelEvent",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "application_id",
                        "source",
                        "name",
                        "occurred_us",
                        "user_dense",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "application",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="apps_registry.application",
                    ),
                ),
                ("source", models.SmallIntegerField()),
                ("name", models.CharField(max_length=255)),
                ("environment", models.CharField(max_length=32)),
                ("occurred_us", models.BigIntegerField()),
                ("user_dense", models.IntegerField()),
                ("org_dense", models.IntegerField(null=True)),
            ],
            options={"db_table": "analytics_funnelevent", "managed": False},
        ),
        migrations.RunSQL(CREATE_SQL, DROP_SQL),
    ]
