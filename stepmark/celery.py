"""The Celery app: Redis broker in production, explicit queues, late acks, one task at a time."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")

app = Celery("stepmark")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
)
# Named, like the job kinds in workers.registry: workers is the one app with tasks, and a stray
# `tasks` module of another app on the path is never picked up.
app.autodiscover_tasks(["workers"])
