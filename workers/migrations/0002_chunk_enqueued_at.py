from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workers", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="jobchunk",
            name="claimed_by",
            field=models.CharField(blank=True, help_text="The worker (Celery node name) that claimed it last.", max_length=200),
        ),
        migrations.AddField(
            model_name="jobchunk",
            name="enqueued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="jobchunk",
            index=models.Index(fields=["status", "claimed_at"], name="jobchunk_status_claimed"),
        ),
    ]
