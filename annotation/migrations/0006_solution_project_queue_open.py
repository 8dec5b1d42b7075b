import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The queue's own index, step 1: each solution's project (copied from its item) and an open flag.

    The NOT NULL and the index come in 0007: PostgreSQL refuses to alter a table in the same
    transaction as updates whose (deferred) foreign-key checks are still pending.
    """

    dependencies = [
        ("annotation", "0005_humanlabel_step_index_from_unique"),
    ]

    operations = [
        migrations.AddField(
            model_name="solution",
            name="project",
            field=models.ForeignKey(
                null=True,
                db_index=False,
                editable=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="annotation.project",
            ),
        ),
        migrations.AddField(
            model_name="solution",
            name="queue_open",
            field=models.BooleanField(db_default=True, editable=False),
        ),
        # Plain SQL both SQLite and PostgreSQL run: correlated subqueries, no UPDATE ... FROM.
        migrations.RunSQL(
            """
            UPDATE annotation_solution SET project_id = (
                SELECT i.project_id FROM annotation_item i WHERE i.id = annotation_solution.item_id
            )
            """,
            migrations.RunSQL.noop,
        ),
        migrations.RunSQL(
            """
            UPDATE annotation_solution SET queue_open = (
                slots_taken < (
                    SELECT p.overlap FROM annotation_project p WHERE p.id = annotation_solution.project_id
                )
            )
            """,
            migrations.RunSQL.noop,
        ),
    ]
