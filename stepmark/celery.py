"""The Celery app: Redis broker in production, explicit queues, late acks, one task at a time, the beat schedule."""

import os

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")

app = Celery("stepmark")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=(Queue("default"), Queue("gpu")),
    task_default_queue="default",
    # Chunk tasks name their queue when sent (workers.services.queue_for); the reaper is light work;
    # the scoring API's model runs where the models are.
    task_routes={"workers.tasks.jobs_reap": {"queue": "default"}, "workers.tasks.scoring_requests_prune": {"queue": "default"},
                 "workers.tasks.scoring_request_run": {"queue": "gpu"}},
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


@app.on_after_configure.connect
def beat_schedule(sender, **kwargs):
    # Beat's DatabaseScheduler copies these entries into its tables on start (editable in the admin).
    from django.conf import settings

    interval = settings.STEPMARK_REAPER_INTERVAL_SECONDS
    sender.add_periodic_task(
        interval, sender.signature("workers.tasks.jobs_reap"), name="reap stale job chunks", expires=interval
    )
    sender.add_periodic_task(
        3600, sender.signature("workers.tasks.scoring_requests_prune"), name="prune old scoring requests", expires=3600
    )


def gpu_for_process(index: int, gpus: str) -> str | None:
    """The GPU (CUDA device id) of pool process `index` when STEPMARK_WORKER_GPUS lists "0,1,...": one each, in turn."""
    devices = [device.strip() for device in gpus.split(",") if device.strip()]
    return devices[index % len(devices)] if devices else None


@worker_process_init.connect
def pin_gpu(**kwargs):
    # A GPU container runs one pool process per GPU (--concurrency N): each sees only its own device.
    from billiard.process import current_process

    device = gpu_for_process(getattr(current_process(), "index", 0) or 0, os.environ.get("STEPMARK_WORKER_GPUS", ""))
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
