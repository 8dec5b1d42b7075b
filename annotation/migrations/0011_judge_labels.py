# Judge labels (issue 17).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0010_invitation'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='autolabel',
            name='autolabel_kind_valid',
        ),
        migrations.AddField(
            model_name='autolabel',
            name='prompt_version',
            field=models.CharField(blank=True, db_default='', default='', help_text="A judge's prompt hash (prm.core.judge).", max_length=20),
        ),
        migrations.AddField(
            model_name='autolabel',
            name='reason',
            field=models.TextField(blank=True, db_default='', default='', help_text="A judge's reason for its verdict."),
        ),
        migrations.AddField(
            model_name='project',
            name='judge_prompt',
            field=models.TextField(blank=True, db_default='', default='', help_text="The LLM judge's prompt ({question}, {steps}, {num_steps} are filled in); empty: the default."),
        ),
        migrations.AlterField(
            model_name='autolabel',
            name='kind',
            field=models.CharField(choices=[('mc', 'Monte Carlo'), ('prm', 'PRM score'), ('imported', 'Imported label'), ('judge', 'LLM judge')], max_length=10),
        ),
        migrations.AddConstraint(
            model_name='autolabel',
            constraint=models.CheckConstraint(condition=models.Q(('kind__in', ['mc', 'prm', 'imported', 'judge'])), name='autolabel_kind_valid'),
        ),
    ]
