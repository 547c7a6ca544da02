"""What a subscriptions snapshot determines, written by its import for every process to read (issue 20)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0003_subscription_autovacuum"),
    ]

    operations = [
        migrations.CreateModel(
            name="SnapshotPart",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=16)),
                ("since", models.DateTimeField(blank=True, null=True)),
                ("until", models.DateTimeField(blank=True, null=True)),
                ("payload", models.TextField()),
                (
                    "snapshot",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="revenue.import"
                    ),
                ),
            ],
        ),
    ]
