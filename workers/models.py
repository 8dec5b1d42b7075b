"""Jobs: long work split into chunks, so progress survives a crash and a chunk is never done twice."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q


class Job(models.Model):
    class Kind(models.TextChoices):
        EXPORT = "export", "Export a dataset"
        SAMPLE_SOLUTIONS = "sample_solutions", "Sample solutions from a policy"
        MC_LABEL = "mc_label", "Monte Carlo step labels"
        PRM_PRELABEL = "prm_prelabel", "Live PRM pre-labels"
        TRAIN = "train", "Train a PRM"
        EVALUATE = "evaluate", "Evaluate a PRM"
        IMPORT = "import", "Import a dataset"
        JUDGE = "judge", "LLM judge labels"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    project = models.ForeignKey("annotation.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    result_file = models.FileField(upload_to="jobs/", max_length=300, blank=True)
    # The images of an export's records, beside a JSON-lines result (as `export_dataset --images-zip`).
    images_file = models.FileField(upload_to="jobs/", max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed", "cancelled"]), name="job_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def progress_unit(self) -> str:
        """What one unit of progress_done / progress_total counts, for people."""
        return PROGRESS_UNITS.get(self.kind, "units")

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED, self.Status.CANCELLED)

    @property
    def offers_internvl_meta(self) -> bool:
        """A finished export in a format InternVL's fine-tuning reads through a meta json."""
        from annotation.services.dataset_export import internvl_meta_formats

        return (self.kind == self.Kind.EXPORT and self.status == self.Status.DONE and bool(self.result_file)
                and self.params.get("format") in internvl_meta_formats())


PROGRESS_UNITS = {
    Job.Kind.EXPORT: "solutions",
    Job.Kind.IMPORT: "solutions",
    Job.Kind.SAMPLE_SOLUTIONS: "items",
    Job.Kind.MC_LABEL: "solutions",
    Job.Kind.PRM_PRELABEL: "solutions",
    Job.Kind.TRAIN: "training steps",
    Job.Kind.EVALUATE: "evaluations",
}


def chunk_file_path(chunk: JobChunk, filename: str) -> str:
    """A chunk's output file sits in its job's own folder, so the job's last stage can sweep it whole."""
    return f"jobs/parts/job{chunk.job_id}/{filename}"


class JobChunkQuerySet(models.QuerySet):
    def ready(self) -> JobChunkQuerySet:
        """Chunks whose earlier stages are all done: the only ones that may be sent or run."""
        earlier_unfinished = JobChunk.objects.filter(job=OuterRef("job"), stage__lt=OuterRef("stage")).exclude(
            status=JobChunk.Status.DONE
        )
        return self.exclude(Exists(earlier_unfinished))


class JobChunk(models.Model):
    """A unit of a job's work. Claimed with a conditional UPDATE; its results commit with status=done.

    `attempts` is the claim's fencing token: a worker may finish, heartbeat or fail a chunk only
    while the attempt it claimed is still the current one, so a worker presumed dead that wakes
    up late cannot overwrite the claim that took over from it.

    `stage` orders the chunks of a job: those of one stage are independent (any number of workers
    take them at once), and a stage is sent, and can be claimed, only once every chunk of the
    stages before it is done (an export's parts, then the one chunk that joins them).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    stage = models.PositiveSmallIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    size = models.PositiveIntegerField(default=1, help_text="Units of progress this chunk is worth.")
    # Units its attempts reported live (ProgressReporter), a dead one's included: the chunk's end adds
    # size minus this to the job, so an attempt that died half-way is not counted twice.
    progress_done = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="The worker (Celery node name) that claimed it last.")
    # When a task for this chunk last reached the broker; null while it never did (broker down).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # What the chunk wrote for a later stage (an export part); saved with status=done, cleared and
    # deleted by the stage that consumes it.
    result_file = models.FileField(upload_to=chunk_file_path, max_length=300, blank=True)

    objects = JobChunkQuerySet.as_manager()

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="jobchunk_unique_index"),
        ]
        indexes = [
            # The reaper's scan: unfinished chunks by state.
            models.Index(fields=["status", "claimed_at"], name="jobchunk_status_claimed"),
        ]


class ScoringRequest(models.Model):
    """One call of the PRM scoring API (`POST /api/prm/score/`, `/api/prm/rank/`), served by a gpu worker.

    The web process validates the request and stores it here (`payload`); the worker claims it with a
    conditional UPDATE, runs the model and writes `result` (the API's response body) or `error`. There
    is no Celery result backend: the web process reads the outcome from this row.
    """

    class Kind(models.TextChoices):
        SCORE = "score"
        RANK = "rank"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="scoring_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The validated request: version name and directory, aggregation, question, steps or responses,
    # and the images as the request's base64 strings or an item id.
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    # A failure the request caused (a bad image, a missing model folder: 400), not the server (500).
    bad_request = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["pending", "running", "done", "failed"]),
                                   name="scoringrequest_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=["score", "rank"]), name="scoringrequest_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"PRM {self.kind} request #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
