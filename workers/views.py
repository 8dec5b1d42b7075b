"""The jobs page: admins start jobs on a project, watch live progress, cancel, read errors, download results."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.access import project_for_admin
from annotation.selectors import LABEL_SOURCES
from annotation.services.dataset_export import EXPORT_FORMATS
from workers.export_services import EXPORT_FLAGS, export_job_start
from workers.forms import JudgeJobForm, MCJobForm, PrelabelJobForm, SampleJobForm
from workers.generation.openai_backend import generation_servers
from workers.judge_services import judge_job_start, judge_prompt_save
from workers.mc_services import mc_job_start, sample_job_start
from workers.models import Job
from workers.prelabel_services import live_prm_version, prelabel_job_start, priority_refresh
from workers.selectors import project_job, project_jobs
from workers.services import job_cancel, job_requeue

JOB_FORMS = {"sample": SampleJobForm, "mc": MCJobForm, "prelabel": PrelabelJobForm, "judge": JudgeJobForm}


def _render_jobs(request: HttpRequest, project, *, bound=None, status: int = 200) -> HttpResponse:
    """The jobs page; `bound` is a submitted form that failed validation, shown with its errors."""
    forms = {prefix: form_class(prefix=prefix, project=project) for prefix, form_class in JOB_FORMS.items()}
    if bound is not None:
        forms[bound.prefix] = bound
    context = {
        "project": project,
        "jobs": project_jobs(project=project),
        "export_formats": sorted(EXPORT_FORMATS),
        "label_sources": LABEL_SOURCES,
        "forms": forms,
        "live_prm": live_prm_version(project=project),
        "judge_servers": generation_servers(),
    }
    return render(request, "workers/jobs.html", context, status=status)


@login_required
def jobs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    return _render_jobs(request, project)


def _start_from_form(request: HttpRequest, project_id: int, prefix: str, start) -> HttpResponse:
    """Validate the form; `start(form, project)` creates the job or raises ValueError with a message."""
    project = project_for_admin(request.user, project_id)
    form = JOB_FORMS[prefix](request.POST, prefix=prefix, project=project)
    if form.is_valid():
        try:
            job = start(form, project)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{job.get_kind_display()} job #{job.pk} started on {job.progress_total} units.")
            return redirect("jobs", project_id=project.id)
    messages.error(request, "The job was not started: see the form's errors below.")
    return _render_jobs(request, project, bound=form, status=400)


@require_POST
@login_required
def sample_job_start_view(request: HttpRequest, project_id: int) -> HttpResponse:
    def start(form, project):
        data = form.cleaned_data
        return sample_job_start(
            project=project, backend=form.backend_params(), n=data["n"], item_ids=form.selected_ids, user=request.user
        )

    return _start_from_form(request, project_id, "sample", start)


@require_POST
@login_required
def mc_job_start_view(request: HttpRequest, project_id: int) -> HttpResponse:
    def start(form, project):
        data = form.cleaned_data
        return mc_job_start(
            project=project,
            backend=form.backend_params(),
            solution_ids=form.selected_ids,
            strategy=data["strategy"],
            k=data["k"],
            max_steps=data["max_steps"],
            early_stop=data["early_stop"],
            user=request.user,
        )

    return _start_from_form(request, project_id, "mc", start)


@require_POST
@login_required
def prelabel_job_start_view(request: HttpRequest, project_id: int) -> HttpResponse:
    def start(form, project):
        return prelabel_job_start(project=project, solution_ids=form.selected_ids, user=request.user)

    return _start_from_form(request, project_id, "prelabel", start)


@require_POST
@login_required
def judge_job_start_view(request: HttpRequest, project_id: int) -> HttpResponse:
    def start(form, project):
        data = form.cleaned_data
        if data["save_prompt"]:
            judge_prompt_save(project=project, prompt=data["prompt"])
        return judge_job_start(
            project=project, server=data["server"], solution_ids=form.selected_ids, prompt=data["prompt"],
            temperature=data["temperature"], max_tokens=data["max_tokens"], user=request.user,
        )

    return _start_from_form(request, project_id, "judge", start)


@require_POST
@login_required
def priority_refresh_view(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    count = priority_refresh(project=project)
    messages.success(request, f"Annotation priority recomputed for {count} solutions.")
    return redirect("jobs", project_id=project.id)


@require_POST
@login_required
def export_job_start_view(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    format_name = request.POST.get("format", "")
    try:
        export_job_start(
            project=project,
            format_name=format_name,
            label_source=request.POST.get("label_source", "merged"),
            flags={flag for flag in EXPORT_FLAGS if request.POST.get(flag)},
            user=request.user,
        )
    except ValueError as exc:
        messages.error(request, f"The export was not started: {exc}.")
    else:
        messages.success(request, f"Export to {format_name} started.")
    return redirect("jobs", project_id=project.id)


def _job_for_admin(request: HttpRequest, project_id: int, job_id: int) -> Job:
    return project_job(project=project_for_admin(request.user, project_id), job_id=job_id)


def _row_or_page(request: HttpRequest, job: Job) -> HttpResponse:
    """After an action on a job: its fresh row for htmx, else back to the jobs page."""
    if request.headers.get("HX-Request"):
        job = project_job(project=job.project, job_id=job.pk)
        return render(request, "workers/jobs.html#job-row", {"job": job, "project": job.project})
    return redirect("jobs", project_id=job.project_id)


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
    return _row_or_page(request, job)


@require_POST
@login_required
def job_requeue_view(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """Send an unfinished job's chunks again, or retry a failed one (QueueUnavailable: see workers.middleware)."""
    job = _job_for_admin(request, project_id, job_id)
    try:
        sent = job_requeue(job=job)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Job #{job.pk}: {sent} chunk{'' if sent == 1 else 's'} sent to the queue.")
    return _row_or_page(request, job)


@login_required
def job_download(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    job = _job_for_admin(request, project_id, job_id)
    if job.status != Job.Status.DONE or not job.result_file:
        raise Http404("This job has no file to download.")
    return FileResponse(job.result_file.open("rb"), as_attachment=True, filename=job.result_file.name.rsplit("/", 1)[-1])
