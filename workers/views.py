"""The jobs page: admins start jobs on a project, watch live progress, cancel, read errors, download results."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import project_for_admin
from workers.export_services import export_job_start
from workers.forms import ExportJobForm, JudgeJobForm, MCJobForm, PrelabelJobForm, SampleJobForm
from workers.generation.openai_backend import generation_servers
from workers.judge_services import judge_job_start, judge_prompt_save
from workers.mc_services import mc_job_start, sample_job_start
from workers.models import Job
from workers.prelabel_services import live_prm_version, prelabel_job_start, priority_refresh
from workers.selectors import project_job, project_jobs
from workers.services import job_cancel, job_requeue

JOB_FORMS = {"sample": SampleJobForm, "mc": MCJobForm, "prelabel": PrelabelJobForm, "judge": JudgeJobForm}


def _render_jobs(request: HttpRequest, project, *, bound=None, export_form=None, status: int = 200) -> HttpResponse:
    """The jobs page; `bound` is a submitted form that failed validation, shown with its errors."""
    forms = {prefix: form_class(prefix=prefix, project=project) for prefix, form_class in JOB_FORMS.items()}
    if bound is not None:
        forms[bound.prefix] = bound
    context = {
        "project": project,
        "jobs": project_jobs(project=project),
        "export_form": export_form or ExportJobForm(project=project),
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
    form = ExportJobForm(request.POST, project=project)
    if form.is_valid():
        try:
            job = export_job_start(project=project, user=request.user, **form.start_kwargs())
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Export to {job.params['format']} started as job #{job.pk}.")
            return redirect(reverse("jobs", kwargs={"project_id": project.id}) + f"#job-{job.pk}")
    return _render_jobs(request, project, export_form=form, status=400)


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


def _job_page(job: Job) -> str:
    """The page a job is shown on: the import page for imports, else the jobs page."""
    name = "import" if job.kind == Job.Kind.IMPORT else "jobs"
    return reverse(name, kwargs={"project_id": job.project_id}) + f"#job-{job.pk}"


@require_http_methods(["GET", "POST"])
@login_required
def job_cancel_view(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """GET: a confirmation page (works without JavaScript); POST: cancel."""
    job = _job_for_admin(request, project_id, job_id)
    if request.method == "GET":
        return render(request, "workers/job_cancel.html", {"job": job, "project": job.project, "back": _job_page(job)})
    if job_cancel(job=job):
        messages.success(request, f"Job #{job.pk} cancelled.")
    if request.headers.get("HX-Request"):
        return _row_or_page(request, job)
    return redirect(_job_page(job))


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


def _download(job: Job, file) -> FileResponse:
    if job.status != Job.Status.DONE or not file:
        raise Http404("This job has no file to download.")
    return FileResponse(file.open("rb"), as_attachment=True, filename=file.name.rsplit("/", 1)[-1])


@login_required
def job_download(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    job = _job_for_admin(request, project_id, job_id)
    return _download(job, job.result_file)


@login_required
def job_download_meta(request: HttpRequest, project_id: int, job_id: int) -> HttpResponse:
    """InternVL's meta json for a visualprm400k export: the file beside it, its images in images/
    (where the images zip unzips), its record count; for `--meta_path` of InternVL's fine-tuning."""
    from annotation.services.dataset_export import internvl_meta_beside

    job = _job_for_admin(request, project_id, job_id)
    if not job.offers_internvl_meta:
        raise Http404("This job has no InternVL meta json.")
    data_name = job.result_file.name.rsplit("/", 1)[-1]
    meta = internvl_meta_beside(format_name=job.params["format"], data_name=data_name,
                                length=int(job.counts.get("records_written", 0)))
    response = JsonResponse(meta, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{data_name.rsplit(".", 1)[0]}.meta.json"'
    return response


@login_required
def job_download_images(request: HttpRequest, project_id: int, job_id: int) -> FileResponse:
    """The images zip written beside an export (the paths its records name)."""
    job = _job_for_admin(request, project_id, job_id)
    return _download(job, job.images_file)
