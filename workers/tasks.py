"""Celery tasks: thin, idempotent, taking ids. The work is in the runners (workers.registry) and the services."""

from __future__ import annotations

import logging
from dataclasses import asdict

from celery import shared_task

from annotation.models import Project
from workers.errors import TransientJobError
from workers.registry import runner_for
from workers.retraining import training_run_start_if_due
from workers.scoring_services import scoring_request_serve, scoring_requests_prune
from workers.services import ChunkLost, chunk_claim, chunk_release, job_fail, jobs_reap

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientJobError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=6,
)
def run_job_chunk(self, chunk_id: int) -> str:
    chunk = chunk_claim(chunk_id=chunk_id, worker=self.request.hostname or "")
    if chunk is None:
        return "not claimed (done, taken, or job stopped)"
    run = runner_for(chunk.job.kind)
    if run is None:
        job_fail(chunk=chunk, error=f"no runner for job kind {chunk.job.kind!r}")
        return "failed"
    try:
        run(chunk)
    except TransientJobError as exc:
        if self.request.retries >= self.max_retries:
            # Out of retries: a chunk left pending would keep its job "running" for ever.
            job_fail(chunk=chunk, error=f"gave up after {self.max_retries} retries: {exc}")
            return "failed"
        chunk_release(chunk=chunk, error=str(exc))
        logger.warning("chunk %s: transient error, retrying: %s", chunk_id, exc)
        raise
    except ChunkLost as exc:
        logger.info("chunk %s dropped: %s", chunk_id, exc)
        return "dropped"
    except Exception as exc:
        logger.exception("chunk %s failed", chunk_id)
        job_fail(chunk=chunk, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    return "done"


@shared_task(name="workers.tasks.scoring_request_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def scoring_request_run(request_id: int) -> str:
    """The scoring API's model call, on the gpu queue (stepmark.celery routes it there). Idempotent:
    the request is claimed once; a duplicate or late delivery finds it taken or finished."""
    return scoring_request_serve(request_id=request_id)


@shared_task(name="workers.tasks.retrain_if_due", ignore_result=True)  # prm.schedule.RETRAIN_TASK
def retrain_if_due(project_id: int, min_new_labels: int = 200, config: dict | None = None,
                   merge_policy: dict | None = None, margin: float | None = None) -> str:
    """Beat's entry point. `margin` is read by the registry from the schedule itself; accepted here so
    the PeriodicTask's kwargs stay one editable record."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return f"no project {project_id}"
    outcome = training_run_start_if_due(
        project=project, min_new_labels=min_new_labels, config=config, merge_policy=merge_policy
    )
    logger.info("retraining %s: %s", project.name, outcome.reason)
    return outcome.reason


@shared_task(name="workers.tasks.jobs_reap", ignore_result=True)
def reap_stale_chunks() -> dict:
    """Beat's entry point (stepmark.celery's beat schedule): re-send chunks no worker will run otherwise."""
    return asdict(jobs_reap())


@shared_task(name="workers.tasks.scoring_requests_prune", ignore_result=True)
def prune_scoring_requests() -> int:
    """Beat's entry point (stepmark.celery's beat schedule): delete old scoring API requests."""
    return scoring_requests_prune()
