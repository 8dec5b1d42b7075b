"""Reads of jobs for the jobs page: each job with how many of its chunks never reached the broker
(a later stage's chunks, not sent until the stages before them are done, are not counted)."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from workers.models import Job, JobChunk


def _with_unsent(jobs: QuerySet[Job]) -> QuerySet[Job]:
    unsent = (
        JobChunk.objects.filter(job=OuterRef("pk"), status=JobChunk.Status.PENDING, enqueued_at__isnull=True)
        .ready()
        .values("job")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return jobs.annotate(unsent_chunks=Coalesce(Subquery(unsent, output_field=IntegerField()), 0))


def project_jobs(*, project, limit: int = 50) -> list[Job]:
    return list(_with_unsent(Job.objects.filter(project=project))[:limit])


def project_job(*, project, job_id: int) -> Job:
    """The project's job (404 for another project's), annotated like project_jobs."""
    return get_object_or_404(_with_unsent(Job.objects.filter(project=project)), pk=job_id)
