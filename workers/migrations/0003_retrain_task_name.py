"""The retraining beat task moved from prm.tasks to workers.tasks: point stored schedules at it."""

from django.db import migrations

OLD, NEW = "prm.tasks.retrain_if_due", "workers.tasks.retrain_if_due"


def _rename(apps, old: str, new: str) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=old).update(task=new)


class Migration(migrations.Migration):
    dependencies = [("workers", "0002_chunk_enqueued_at"), ("django_celery_beat", "0001_initial")]

    operations = [
        migrations.RunPython(lambda apps, schema: _rename(apps, OLD, NEW), lambda apps, schema: _rename(apps, NEW, OLD)),
    ]
