"""The import page: a project's admins upload a dataset (and its images), a worker imports it with live
progress, and the page lists the imports done so far with their counts."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from annotation.access import project_for_admin
from annotation.formats.guide import IMPORT_GUIDE
from workers.forms import ImportForm
from workers.import_services import import_job_start, project_import_jobs, project_imports


def _render(request: HttpRequest, project, *, form: ImportForm | None = None, status: int = 200) -> HttpResponse:
    return render(request, "workers/import.html", {
        "project": project,
        "form": form or ImportForm(),
        "guides": list(IMPORT_GUIDE.values()),
        "jobs": project_import_jobs(project=project),
        "imports": project_imports(project=project),
    }, status=status)


@login_required
def import_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _render(request, project_for_admin(request.user, project_id))


@csrf_exempt  # checked below, once the upload handlers are set (Django's pattern for per-view handlers)
@require_POST
@login_required
def import_start(request: HttpRequest, project_id: int) -> HttpResponse:
    # Every upload streams to a temporary file, whatever its size: nothing is held whole in memory.
    request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return _import_start(request, project_id)


@csrf_protect
def _import_start(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            job = import_job_start(
                project=project, format_name=data["format"], upload=data["file"], images=data.get("images"),
                options=data["options"], user=request.user,
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Import of {job.params['source_name']} started as job #{job.pk}.")
            return redirect(reverse("import", kwargs={"project_id": project.id}) + f"#job-{job.pk}")
    return _render(request, project, form=form, status=400)
