"""Celery tasks: thin, idempotent, taking ids. The work is in workers.runners and the services."""

from __future__ import annotations

import logging

from celery import shared_task

from workers.errors import TransientJobError
from workers.runners import RUNNERS
from workers.services import ChunkLost, chunk_claim, chunk_release, job_fail

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
    chunk = chunk_claim(chunk_id=chunk_id)
    if chunk is None:
        return "not claimed (done, taken, or job stopped)"
    run = RUNNERS.get(chunk.job.kind)
    if run is None:
        job_fail(chunk=chunk, error=f"no runner for job kind {chunk.job.kind!r}")
        return "failed"
    try:
        run(chunk)
    except TransientJobError as exc:
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
