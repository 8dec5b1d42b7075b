"""The jobs page: admins start jobs on a project, watch live progress, cancel, read errors, download results."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.permissions import project_for_admin
from annotation.selectors import LABEL_SOURCES
from annotation.services.dataset_export import EXPORT_FORMATS
from workers.models import Job
from workers.services import job_cancel, job_create


@login_required
def jobs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    jobs = Job.objects.filter(project=project)[:50]
    return render(
        request,
        "workers/jobs.html",
        {"project": project, "jobs": jobs, "export_formats": sorted(EXPORT_FORMATS), "label_sources": LABEL_SOURCES},
    )


@require_POST
@login_required
def export_job_start(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    format_name = request.POST.get("format", "")
    label_source = request.POST.get("label_source", "merged")
    if format_name not in EXPORT_FORMATS or label_source not in LABEL_SOURCES:
        messages.error(request, f"Unknown export format {format_name!r} or label source {label_source!r}.")
        return redirect("jobs", project_id=project.id)
    filters = {"label_source": label_source}
    for flag in ("only_adjudicated", "only_agreed", "complete_only"):
        if request.POST.get(flag):
            filters[flag] = True
    job_create(kind=Job.Kind.EXPORT, project=project, params={"format": format_name, "filters": filters}, user=request.user)
    messages.success(request, f"Export to {format_name} started.")
    return redirect("jobs", project_id=project.id)


def _job_for_admin(request: HttpRequest, project_id: int, job_id: int) -> Job:
    project = project_for_admin(request.user, project_id)
    return get_object_or_404(Job, pk=job_id, project=project)


@login_required
def job_row(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """The job's row, polled by htmx while the job runs (live progress bar)."""
    job = _job_for_admin(request, project_id, job_id)
    return render(request, "workers/jobs.html#job-row", {"job": job, "project": job.project})


@require_POST
@login_required
def job_cancel_view(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    job = _job_for_admin(request, project_id, job_id)
    job_cancel(job=job)
    job.refresh_from_db()
    if request.headers.get("HX-Request"):
        return render(request, "workers/jobs.html#job-row", {"job": job, "project": job.project})
    return redirect("jobs", project_id=project_id)


@login_required
def job_download(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    job = _job_for_admin(request, project_id, job_id)
    if job.status != Job.Status.DONE or not job.result_file:
        raise Http404("This job has no file to download.")
    return FileResponse(job.result_file.open("rb"), as_attachment=True, filename=job.result_file.name.rsplit("/", 1)[-1])
