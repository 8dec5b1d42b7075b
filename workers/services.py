"""Creating, enqueueing, claiming, finishing, cancelling and reaping jobs. Tasks call these; so do the pages and the API."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from workers.models import Job, JobChunk

logger = logging.getLogger(__name__)

GPU_KINDS = {Job.Kind.SAMPLE_SOLUTIONS, Job.Kind.MC_LABEL, Job.Kind.PRM_PRELABEL, Job.Kind.TRAIN, Job.Kind.EVALUATE}
# A running chunk whose claim is older than this is presumed dead (worker killed) and may be claimed again.
CHUNK_LEASE = timedelta(minutes=10)
ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)
COUNTS_LIST_LIMIT = 100  # entries a job's counts keep of a list value (the numbers stay complete)


def chunk_lease() -> timedelta:
    """CHUNK_LEASE, or settings.STEPMARK_CHUNK_LEASE_SECONDS when set (tests shorten it)."""
    seconds = getattr(settings, "STEPMARK_CHUNK_LEASE_SECONDS", None)
    return timedelta(seconds=seconds) if seconds else CHUNK_LEASE


def queue_for(kind: str) -> str:
    return "gpu" if kind in GPU_KINDS else "default"


class ChunkLost(RuntimeError):
    """This worker's claim on a chunk ended (the job was cancelled, or the chunk was taken over)."""


class QueueUnavailable(RuntimeError):
    """The broker could not be reached. The job is saved; its unsent chunks wait for a re-queue or the reaper."""

    def __init__(self, *, job_id: int):
        self.job_id = job_id
        super().__init__(
            f"The job queue is unavailable, so job #{job_id} is saved but not queued yet. It is sent by itself "
            "once the queue is back, or re-queue it from the jobs page."
        )


def job_create(*, kind: str, project=None, params: dict | None = None, chunks: list[dict] | None = None, user=None) -> Job:
    """Create a job with its chunks (each {"params": ..., "size": n, "stage": s}) and enqueue the first stage after commit.

    When the broker is down the job stays saved and QueueUnavailable leaves the outermost
    transaction block (after the commit), for the page or API to answer.
    """
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
            [
                JobChunk(job=job, index=i, stage=int(c.get("stage", 0)), params=c.get("params", {}), size=int(c.get("size", 1)))
                for i, c in enumerate(chunks)
            ]
        )
        transaction.on_commit(lambda: job_enqueue(job=job))
    return job


def job_enqueue(*, job: Job, chunk_ids: list[int] | None = None) -> int:
    """Send a task for every unfinished chunk of the job's current stage (or only `chunk_ids`); how a job
    starts, resumes, moves to its next stage and is re-queued.

    Raises QueueUnavailable when the broker cannot be reached; chunks sent before that keep their
    `enqueued_at`, the others stay unsent for the reaper.
    """
    from workers.tasks import run_job_chunk

    if chunk_ids is None:
        unfinished = job.chunks.filter(status__in=[JobChunk.Status.PENDING, JobChunk.Status.RUNNING])
        chunk_ids = list(unfinished.ready().values_list("id", flat=True))
    sent: list[int] = []
    try:
        for chunk_id in chunk_ids:
            run_job_chunk.apply_async(args=[chunk_id], queue=queue_for(job.kind))
            sent.append(chunk_id)
    except BrokerUnreachable as exc:
        logger.warning("job %s: broker unreachable after %s of %s chunks: %s", job.pk, len(sent), len(chunk_ids), exc)
        raise QueueUnavailable(job_id=job.pk) from exc
    finally:
        if sent:
            JobChunk.objects.filter(pk__in=sent).update(enqueued_at=timezone.now())
    return len(sent)


def job_requeue(*, job: Job) -> int:
    """An admin's retry: send the unfinished chunks again; a failed job starts over from its unfinished chunks.

    Duplicate tasks are harmless (a chunk is claimed once). Raises ValueError for a job that is done
    or cancelled, and QueueUnavailable while the broker is down.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status == Job.Status.FAILED:
            job.chunks.filter(status=JobChunk.Status.FAILED).update(status=JobChunk.Status.PENDING, error="", finished_at=None)
            Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED, error="", finished_at=None)
        elif job.status not in ACTIVE:
            raise ValueError(f"job #{job.pk} is {job.status}: there is nothing to re-queue")
    return job_enqueue(job=job)


@dataclass(frozen=True, slots=True)
class ReapResult:
    chunks: int
    jobs: int


def jobs_reap() -> ReapResult:
    """Re-send the chunks of unfinished jobs that no worker will run otherwise.

    Those are chunks that never reached the broker (it was down, or a stage's last chunk could not
    send the next stage) and running chunks whose lease expired (their worker died) and that were
    not re-sent within the last lease; never a chunk whose earlier stages are unfinished. Beat runs this
    every STEPMARK_REAPER_INTERVAL_SECONDS; `manage.py jobs_reap` runs it by hand. Rows are locked
    with SKIP LOCKED, so two reapers never send the same chunk twice.
    """
    now = timezone.now()
    cutoff = now - chunk_lease()
    stale = JobChunk.objects.filter(job__status__in=ACTIVE).filter(
        Q(status=JobChunk.Status.PENDING, enqueued_at__isnull=True)
        | Q(status=JobChunk.Status.RUNNING, claimed_at__lt=cutoff)
        & (Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=cutoff))
    ).ready()
    by_job: dict[int, list[int]] = {}
    with transaction.atomic():
        for chunk_id, job_id in stale.select_for_update(skip_locked=True, of=("self",)).values_list("id", "job_id"):
            by_job.setdefault(job_id, []).append(chunk_id)
        for job in Job.objects.filter(pk__in=by_job):
            job_enqueue(job=job, chunk_ids=by_job[job.pk])
    if by_job:
        logger.info("reaper re-sent %s chunks of %s jobs", sum(map(len, by_job.values())), len(by_job))
    return ReapResult(chunks=sum(map(len, by_job.values())), jobs=len(by_job))


def chunk_claim(*, chunk_id: int, worker: str = "") -> JobChunk | None:
    """Claim a chunk for this worker with one conditional UPDATE; None if done, taken, the job stopped,
    or an earlier stage of the job is unfinished (a duplicate task; the stage's end sends it again)."""
    now = timezone.now()
    claimable = Q(status=JobChunk.Status.PENDING) | Q(status=JobChunk.Status.RUNNING, claimed_at__lt=now - chunk_lease())
    claimed = (
        JobChunk.objects.filter(claimable, pk=chunk_id, job__status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
        .ready()
        .update(status=JobChunk.Status.RUNNING, claimed_at=now, claimed_by=worker[:200], attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    chunk = JobChunk.objects.select_related("job").get(pk=chunk_id)
    Job.objects.filter(pk=chunk.job_id, status=Job.Status.QUEUED).update(status=Job.Status.RUNNING, started_at=now)
    return chunk


def _ours(chunk: JobChunk):
    """The chunk's row while this claim (attempt) still holds it."""
    return JobChunk.objects.filter(pk=chunk.pk, status=JobChunk.Status.RUNNING, attempts=chunk.attempts)


def chunk_heartbeat(*, chunk: JobChunk) -> None:
    """Renew this claim's lease; raises ChunkLost when another worker took the chunk over (or it was cancelled)."""
    if not _ours(chunk).update(claimed_at=timezone.now()):
        raise ChunkLost(f"chunk {chunk.pk} is no longer this worker's (cancelled or taken over)")


def chunk_finish(*, chunk: JobChunk, counts: dict | None = None, progress_set: int | None = None) -> None:
    """Mark a chunk done. Call it inside the same transaction that stores the chunk's results.

    The job's progress gains the chunk's size less what its attempts reported live (a dead attempt's
    included), so it ends exact however many attempts died on the way. `progress_set`: a one-chunk job that counts its own units
    (an import's records, a training run's steps) sets the job's progress to this instead.

    The last chunk of a stage sends the next stage once the transaction commits; should the broker
    be down then, the reaper sends it later.
    """
    assert transaction.get_connection().in_atomic_block, "chunk_finish must share the results' transaction"
    updated = _ours(chunk).update(status=JobChunk.Status.DONE, finished_at=timezone.now(), error="")
    if not updated:
        raise ChunkLost(f"chunk {chunk.pk} is no longer running (cancelled or taken over)")
    reported_live = JobChunk.objects.values_list("progress_done", flat=True).get(pk=chunk.pk)
    job = Job.objects.select_for_update().get(pk=chunk.job_id)
    merged = dict(job.counts)
    for key, value in (counts or {}).items():
        if isinstance(value, list):  # named examples (skipped solutions): kept from every chunk, a few
            merged[key] = (list(merged.get(key) or []) + value)[:COUNTS_LIST_LIMIT]
        else:
            merged[key] = merged.get(key, 0) + value if isinstance(value, int | float) else value
    job.counts = merged
    if progress_set is not None:
        job.progress_done = progress_set
    else:
        # Signed: a dead attempt's live units come off again.
        job.progress_done = Greatest(F("progress_done") + (chunk.size - reported_live), Value(0))
    job.save(update_fields=["counts", "progress_done"])
    unfinished = job.chunks.exclude(status=JobChunk.Status.DONE)
    if not unfinished.exists():
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(status=Job.Status.DONE, finished_at=timezone.now())
    elif not unfinished.filter(stage=chunk.stage).exists():
        transaction.on_commit(lambda: job_enqueue(job=job), robust=True)


def chunk_release(*, chunk: JobChunk, error: str = "") -> None:
    """Give a chunk back after a transient failure, so a retry can claim it at once."""
    _ours(chunk).update(status=JobChunk.Status.PENDING, error=error)


def job_fail(*, chunk: JobChunk, error: str) -> None:
    """A permanent error: the chunk and its job fail with a message a person can act on.

    A worker whose claim was taken over fails nothing: the chunk is someone else's now.
    """
    now = timezone.now()
    if not _ours(chunk).update(status=JobChunk.Status.FAILED, error=error, finished_at=now):
        return
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
        chunk_files_release(job_id=job.pk)  # nothing will read them now
    return bool(updated)


def chunk_files_release(*, job_id: int) -> None:
    """Forget the files a job's chunks wrote for a later stage and delete them, with whatever killed
    attempts left in the job's folder, once the caller's transaction commits (so only files nothing
    committed refers to are deleted)."""
    from django.core.files.storage import default_storage

    from workers.models import chunk_file_path

    JobChunk.objects.filter(job_id=job_id).exclude(result_file="").update(result_file="")
    folder = chunk_file_path(JobChunk(job_id=job_id), "x").rsplit("/", 1)[0]

    def delete() -> None:
        try:
            _, names = default_storage.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            default_storage.delete(f"{folder}/{name}")

    transaction.on_commit(delete, robust=True)


def job_is_cancelled(*, job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, status=Job.Status.CANCELLED).exists()


PROGRESS_ALIAS = "stepmark-progress"


def progress_connection_alias() -> str:
    """A second connection to the same database, in autocommit: progress and lease renewals written
    through it are seen at once and lock nothing for the length of a runner's long transaction (an
    import writes all its rows in one, and a cancel must not wait for it to end)."""
    from django.db import DEFAULT_DB_ALIAS, connections

    if not getattr(settings, "STEPMARK_PROGRESS_SIDE_CONNECTION", True):
        return DEFAULT_DB_ALIAS  # tests running a runner in their own process (their test case owns the connections)
    if PROGRESS_ALIAS not in connections.settings:
        connections.settings[PROGRESS_ALIAS] = dict(connections[DEFAULT_DB_ALIAS].settings_dict)
    return PROGRESS_ALIAS


class ProgressReporter:
    """Live progress from inside a chunk: units add up in memory and reach the job row at most once
    every `interval` seconds (and on `flush`), so the page moves within seconds without a write per unit.

    Writes go through `progress_connection_alias()`, outside any transaction the runner holds open.
    `reported` is what this attempt's flushes added; each flush adds the same to the chunk's row
    (for chunk_finish), renews the chunk's lease and raises ChunkLost once the job was cancelled or
    the chunk taken over, so a cancel stops the runner at its next report. `close()` (or the with block) ends the connection.
    """

    def __init__(self, *, chunk: JobChunk, interval: float = 1.0):
        import time

        self.chunk = chunk
        self.interval = interval
        self.pending = 0
        self.reported = 0
        self._clock = time.monotonic
        self._last = self._clock()
        self.using = progress_connection_alias()

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, units: int = 1) -> None:
        self.pending += units
        if self._clock() - self._last >= self.interval:
            self.flush()

    def total(self, total: int) -> None:
        """The chunk learned its real size once running (an import counting its records)."""
        Job.objects.using(self.using).filter(pk=self.chunk.job_id).update(progress_total=max(0, total))

    def flush(self) -> None:
        self._last = self._clock()
        # Fenced by the attempt: a worker whose chunk was taken over adds nothing, to the chunk or the
        # job; both rows move in one transaction, so the chunk's count is always inside the job's.
        with transaction.atomic(using=self.using):
            renewed = _ours(self.chunk).using(self.using).update(
                claimed_at=timezone.now(), progress_done=F("progress_done") + self.pending
            )
            if renewed and self.pending:
                Job.objects.using(self.using).filter(pk=self.chunk.job_id).update(
                    progress_done=F("progress_done") + self.pending
                )
        # The side connection cannot see rows of a transaction not yet committed (a test's); a plain
        # read on the runner's own connection locks nothing and tells a cancel from that.
        if not renewed and not _ours(self.chunk).exists():
            raise ChunkLost(f"chunk {self.chunk.pk} is no longer this worker's (cancelled or taken over)")
        if self.pending:
            self.reported += self.pending
            self.pending = 0

    def close(self) -> None:
        """Close the side connection and forget its alias (test runners list every alias they know)."""
        from django.db import connections

        if self.using != PROGRESS_ALIAS:
            return
        connections[self.using].close()
        del connections[self.using]
        connections.settings.pop(self.using, None)
