"""Error categories on incorrect steps (project list, label and history), and a queue order that
completes solutions other annotators have started before opening new ones."""

import annotation.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0011_judge_labels'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='solution',
            name='solution_queue',
        ),
        migrations.AddField(
            model_name='humanlabel',
            name='error_category',
            field=models.CharField(blank=True, db_default='', default='', max_length=100),
        ),
        migrations.AddField(
            model_name='humanlabel',
            name='error_note',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AddField(
            model_name='labelchange',
            name='new_category',
            field=models.CharField(blank=True, db_default='', default='', max_length=100),
        ),
        migrations.AddField(
            model_name='labelchange',
            name='new_note',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AddField(
            model_name='labelchange',
            name='old_category',
            field=models.CharField(blank=True, db_default='', default='', max_length=100),
        ),
        migrations.AddField(
            model_name='project',
            name='error_categories',
            field=models.JSONField(blank=True, default=annotation.models.default_error_categories, help_text='The categories offered, in order (a JSON list of names; "other" takes a note).'),
        ),
        migrations.AddField(
            model_name='project',
            name='error_categories_enabled',
            field=models.BooleanField(db_default=False, default=False, help_text="An incorrect step may carry an error category (chosen by key right after 'incorrect')."),
        ),
        migrations.AddIndex(
            model_name='solution',
            index=models.Index(models.F('project'), models.OrderBy(models.F('priority'), descending=True), models.OrderBy(models.ExpressionWrapper(models.Q(('slots_taken__gt', 0)), output_field=models.BooleanField()), descending=True), models.F('id'), condition=models.Q(('queue_open', True)), name='solution_queue'),
        ),
        migrations.AddConstraint(
            model_name='humanlabel',
            constraint=models.CheckConstraint(condition=models.Q(('error_category', ''), ('value', -1), _connector='OR'), name='humanlabel_category_only_incorrect'),
        ),
        migrations.AddConstraint(
            model_name='humanlabel',
            constraint=models.CheckConstraint(condition=models.Q(('error_note', ''), ('error_category', 'other'), _connector='OR'), name='humanlabel_note_only_other'),
        ),
    ]
