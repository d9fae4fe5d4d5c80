"""Drop two indexes that others cover: calls by extension (call_history and the active-call
index lead with extension_id) and events by domain (event_feed leads with domain_id).

Written by hand: for `AlterField(db_index=False)` Django's schema editor drops every index
on the column it finds, and it takes the partial unique index `one_active_call_per_extension`
for one of them. So the model state changes here, and the database loses exactly the two
indexes, by their names (the same on PostgreSQL and SQLite).
"""

import django.db.models.deletion
from django.db import migrations, models

DROPPED = [
    ("presence_call", "extension_id", "presence_call_extension_id_4ca3b96a"),
    ("presence_presenceevent", "domain_id", "presence_presenceevent_domain_id_a7e2bef8"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("domains", "0001_initial"),
        ("presence", "0003_extension_added"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="call",
                    name="extension",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calls",
                        to="domains.extension",
                    ),
                ),
                migrations.AlterField(
                    model_name="presenceevent",
                    name="domain",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="domains.domain",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
                )
                for table, column, index in DROPPED
            ],
        ),
    ]
