"""Creating a project and editing its settings. Views parse the form, call a service and respond."""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import project_for_admin, require_project_creator
from annotation.forms import ProjectCreateForm, ProjectSettingsForm
from annotation.markup import guidelines_html
from annotation.services.projects import project_create, project_save


@login_required
@require_http_methods(["GET", "POST"])
def project_create_view(request: HttpRequest) -> HttpResponse:
    require_project_creator(request.user)
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            project = project_create(project=form.save(commit=False), creator=request.user)
            messages.success(request, f"Project {project.name} created: you are its admin. Check its settings, then add people.")
            return redirect("project-settings", project_id=project.id)
        return render(request, "annotation/project_create.html", {"form": form}, status=400)
    return render(request, "annotation/project_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    if request.method == "GET":
        form = ProjectSettingsForm(instance=project)
        return _settings_page(request, project, form, project.guidelines)
    # The form edits a copy: one that fails validation has written its values onto its instance,
    # and the page around it shows the project as stored.
    form = ProjectSettingsForm(request.POST, instance=copy.copy(project))
    if "preview" in request.POST:  # the preview button, for browsers without scripts: nothing is saved
        return _settings_page(request, project, form, request.POST.get("guidelines", ""))
    if not form.is_valid():
        return _settings_page(request, project, form, request.POST.get("guidelines", ""), status=400)
    project_save(project=form.save(commit=False))
    messages.success(request, "Settings saved.")
    return redirect("project-settings", project_id=project.id)


# Fields the settings page lays out itself; any other field of the form is shown after them.
_PLACED = {"name", "label_mode", "overlap", "guidelines", "gold_rate", "max_steps", "show_machine_labels", "show_reference_answer"}


def _settings_page(request, project, form, guidelines: str, *, status: int = 200) -> HttpResponse:
    extra = [form[name] for name in form.fields if name not in _PLACED]
    context = {"project": project, "form": form, "preview_html": guidelines_html(guidelines), "extra_fields": extra}
    return render(request, "annotation/project_settings.html", context, status=status)


@login_required
@require_POST
def project_guidelines_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """The guidelines being typed, rendered as annotators will see them (the live preview)."""
    project = project_for_admin(request.user, project_id)
    html = render_to_string(
        "annotation/project_settings.html#preview",
        {"project": project, "preview_html": guidelines_html(request.POST.get("guidelines", ""))},
        request=request,
    )
    return HttpResponse(html)
