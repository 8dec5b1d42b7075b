"""Reads of jobs for the jobs page: each job with how many of its chunks never reached the broker."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from workers.models import Job, JobChunk


def _with_unsent(jobs: QuerySet[Job]) -> QuerySet[Job]:
    return jobs.annotate(
        unsent_chunks=Count("chunks", filter=Q(chunks__status=JobChunk.Status.PENDING, chunks__enqueued_at__isnull=True))
    )


def project_jobs(*, project, limit: int = 50) -> list[Job]:
    return list(_with_unsent(Job.objects.filter(project=project))[:limit])


def project_job(*, project, job_id: int) -> Job:
    """The project's job (404 for another project's), annotated like project_jobs."""
    return get_object_or_404(_with_unsent(Job.objects.filter(project=project)), pk=job_id)
