# Judge labels (issue 17).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('workers', '0004_import_job'),
    ]

    operations = [
        migrations.AlterField(
            model_name='job',
            name='kind',
            field=models.CharField(choices=[('export', 'Export a dataset'), ('sample_solutions', 'Sample solutions from a policy'), ('mc_label', 'Monte Carlo step labels'), ('prm_prelabel', 'Live PRM pre-labels'), ('train', 'Train a PRM'), ('evaluate', 'Evaluate a PRM'), ('import', 'Import a dataset'), ('judge', 'LLM judge labels')], max_length=30),
        ),
    ]
