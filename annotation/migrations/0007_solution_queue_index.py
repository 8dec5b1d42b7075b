import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The queue's own index, step 2: every solution now has its project; index the open ones."""

    dependencies = [
        ("annotation", "0006_solution_project_queue_open"),
    ]

    operations = [
        migrations.AlterField(
            model_name="solution",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="annotation.project",
            ),
        ),
        migrations.AddIndex(
            model_name="solution",
            index=models.Index(
                condition=models.Q(("queue_open", True)),
                fields=["project", "-priority", "id"],
                name="solution_queue",
            ),
        ),
    ]
