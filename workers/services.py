"""Creating, claiming, finishing and cancelling jobs. Tasks call these; so do the pages and the API."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from workers.models import Job, JobChunk

GPU_KINDS = {Job.Kind.SAMPLE_SOLUTIONS, Job.Kind.MC_LABEL, Job.Kind.PRM_PRELABEL, Job.Kind.TRAIN, Job.Kind.EVALUATE}
# A running chunk whose claim is older than this is presumed dead (worker killed) and may be claimed again.
CHUNK_LEASE = timedelta(minutes=10)


def chunk_lease() -> timedelta:
    """CHUNK_LEASE, or settings.STEPMARK_CHUNK_LEASE_SECONDS when set (tests shorten it)."""
    seconds = getattr(settings, "STEPMARK_CHUNK_LEASE_SECONDS", None)
    return timedelta(seconds=seconds) if seconds else CHUNK_LEASE


def queue_for(kind: str) -> str:
    return "gpu" if kind in GPU_KINDS else "default"


def job_create(*, kind: str, project=None, params: dict | None = None, chunks: list[dict] | None = None, user=None) -> Job:
    """Create a job with its chunks (each {"params": ..., "size": n}) and enqueue them after commit."""
    chunks = chunks or [{"params": {}, "size": 1}]
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            project=project,
            params=params or {},
            created_by=user if getattr(user, "pk", None) else None,
            progress_total=sum(int(c.get("size", 1)) for c in chunks),
        )
        JobChunk.objects.bulk_create(
            [JobChunk(job=job, index=i, params=c.get("params", {}), size=int(c.get("size", 1))) for i, c in enumerate(chunks)]
        )
        transaction.on_commit(lambda: job_enqueue(job=job))
    return job


def job_enqueue(*, job: Job) -> int:
    """Send a task for every chunk not yet done (also how a job resumes after a crash)."""
    from workers.tasks import run_job_chunk

    pending = list(job.chunks.exclude(status=JobChunk.Status.DONE).values_list("id", flat=True))
    for chunk_id in pending:
        run_job_chunk.apply_async(args=[chunk_id], queue=queue_for(job.kind))
    return len(pending)


def chunk_claim(*, chunk_id: int) -> JobChunk | None:
    """Claim a chunk for this worker with one conditional UPDATE; None if done, taken or the job stopped."""
    now = timezone.now()
    claimable = Q(status=JobChunk.Status.PENDING) | Q(status=JobChunk.Status.RUNNING, claimed_at__lt=now - chunk_lease())
    claimed = (
        JobChunk.objects.filter(claimable, pk=chunk_id, job__status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        .update(status=JobChunk.Status.RUNNING, claimed_at=now, attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    chunk = JobChunk.objects.select_related("job").get(pk=chunk_id)
    Job.objects.filter(pk=chunk.job_id, status=Job.Status.QUEUED).update(status=Job.Status.RUNNING, started_at=now)
    return chunk


def chunk_heartbeat(*, chunk: JobChunk) -> None:
    JobChunk.objects.filter(pk=chunk.pk, status=JobChunk.Status.RUNNING).update(claimed_at=timezone.now())


def job_progress_add(*, job_id: int, units: int) -> None:
    """Live progress inside a long chunk (committed at once, outside any result transaction)."""
    Job.objects.filter(pk=job_id).update(progress_done=F("progress_done") + units)


def chunk_finish(*, chunk: JobChunk, counts: dict | None = None, progress_already_reported: int = 0) -> None:
    """Mark a chunk done. Call it inside the same transaction that stores the chunk's results."""
    assert transaction.get_connection().in_atomic_block, "chunk_finish must share the results' transaction"
    updated = JobChunk.objects.filter(pk=chunk.pk, status=JobChunk.Status.RUNNING).update(
        status=JobChunk.Status.DONE, finished_at=timezone.now(), error=""
    )
    if not updated:
        raise ChunkLost(f"chunk {chunk.pk} is no longer running (cancelled or taken over)")
    job = Job.objects.select_for_update().get(pk=chunk.job_id)
    merged = dict(job.counts)
    for key, value in (counts or {}).items():
        merged[key] = merged.get(key, 0) + value if isinstance(value, int | float) else value
    job.counts = merged
    job.progress_done = F("progress_done") + max(0, chunk.size - progress_already_reported)
    job.save(update_fields=["counts", "progress_done"])
    if not job.chunks.exclude(status=JobChunk.Status.DONE).exists():
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(status=Job.Status.DONE, finished_at=timezone.now())


class ChunkLost(RuntimeError):
    pass


def chunk_release(*, chunk: JobChunk, error: str = "") -> None:
    """Give a chunk back after a transient failure, so a retry can claim it at once."""
    JobChunk.objects.filter(pk=chunk.pk, status=JobChunk.Status.RUNNING).update(status=JobChunk.Status.PENDING, error=error)


def job_fail(*, chunk: JobChunk, error: str) -> None:
    """A permanent error: the chunk and its job fail with a message a person can act on."""
    now = timezone.now()
    JobChunk.objects.filter(pk=chunk.pk).update(status=JobChunk.Status.FAILED, error=error, finished_at=now)
    Job.objects.filter(pk=chunk.job_id).exclude(status__in=[Job.Status.CANCELLED, Job.Status.DONE]).update(
        status=Job.Status.FAILED, error=error, finished_at=now
    )


def job_cancel(*, job: Job) -> bool:
    """Stop a job: chunks not yet claimed will not run; a running chunk's results are refused."""
    now = timezone.now()
    updated = Job.objects.filter(pk=job.pk, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.CANCELLED, finished_at=now
    )
    if updated:
        job.chunks.filter(status__in=[JobChunk.Status.PENDING, JobChunk.Status.RUNNING]).update(status=JobChunk.Status.FAILED, error="cancelled")
    return bool(updated)


def job_is_cancelled(*, job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, status=Job.Status.CANCELLED).exists()
