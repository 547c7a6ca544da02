# The dedup key tables and the partition registry, on their own: an operator upgrading a large
# database applies this first, fills the keys in batches while ingest runs (`manage.py
# ingest_dedup_backfill`), and then 0011 only adds the keys of rows stored since (README,
# "Partitioned raw tables").

import django.contrib.postgres.indexes
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("apps_registry", "0001_initial"),
        ("ingest", "0009_export_ledger"),
    ]

    operations = [
        migrations.CreateModel(
            name="IdentifyKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "application_id",
                        "anon_id",
                        "user_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("anon_id", models.UUIDField()),
                ("user_id", models.CharField(max_length=255)),
                ("row_id", models.BigIntegerField(db_index=True)),
                (
                    "application",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="apps_registry.application",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="RawPartition",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("table", models.CharField(max_length=63)),
                ("number", models.PositiveIntegerField()),
                ("opened_at", models.DateTimeField(blank=True, null=True)),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("table", "number"), name="rawpartition_table_number_uniq")
                ],
            },
        ),
        migrations.CreateModel(
            name="SdkEventKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "application_id", "event_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("event_id", models.UUIDField()),
                ("received_at", models.DateTimeField()),
                ("row_id", models.BigIntegerField()),
                (
                    "application",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="apps_registry.application",
                    ),
                ),
            ],
            options={
                "verbose_name": "SDK event key",
                "indexes": [
                    django.contrib.postgres.indexes.BrinIndex(
                        autosummarize=True, fields=["received_at"], name="sdkeventkey_received_brin"
                    )
                ],
            },
        ),
    ]
