"""The labelling pages: next item, the labelling page, saving one label, submit, skip, images.

Views only parse input, check access, call a service and render. Labels are saved one at a
time (the page through the JSON API, a form post without JavaScript), so a reload or a closed
tab loses nothing.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import assignment_for_member, project_for_member
from annotation.labelling_reads import labelling_screen, open_assignment_id
from annotation.markup import guidelines_html as render_guidelines
from annotation.models import Assignment, Image, Membership
from annotation.services.label_save import (
    AssignmentClosed,
    assignment_step_label_clear,
    assignment_step_label_set,
)
from annotation.services.labels import LabelRejected
from annotation.services.queue import (
    SubmitRejected,
    assignment_add_time,
    assignment_skip,
    next_assignment,
)
from annotation.services.submit import member_assignment_submit


@require_http_methods(["GET", "POST"])
@login_required
def next_item(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET shows my open item (or a button to take one); only POST takes a new item from the queue.

    A GET must not change state: a link or image on another site would otherwise hand out items.
    """
    project = project_for_member(request.user, project_id)
    if request.method == "GET":
        open_id = open_assignment_id(project_id=project.id, annotator_id=request.user.pk)
        if open_id is not None:
            return redirect("label", project_id=project.id, assignment_id=open_id)
        return render(request, "annotation/next_item.html", {"project": project})
    return _take_next(request, project)


def _take_next(request: HttpRequest, project) -> HttpResponse:
    assignment = next_assignment(project=project, annotator=request.user)
    if assignment is None:
        if request.headers.get("HX-Request"):
            return _hx_redirect(reverse("next-item", kwargs={"project_id": project.id}))
        return render(request, "annotation/queue_empty.html", {"project": project})
    url = reverse("label", kwargs={"project_id": project.id, "assignment_id": assignment.id})
    return _hx_redirect(url) if request.headers.get("HX-Request") else redirect(url)


def _hx_redirect(url: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["HX-Redirect"] = url
    return response


@login_required
def label_page(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_member(request.user, project_id, assignment_id)
    solution = assignment.solution
    project = solution.project
    screen = labelling_screen(user=request.user, project=project, solution=solution)
    rows = [{"step": step, "value": step["value"], "hints": step["hints"] or {}} for step in screen.steps]
    guidelines_html = render_guidelines(project.guidelines)
    return render(
        request,
        "annotation/label.html",
        {
            "project": project,
            "assignment": assignment,
            "solution": solution,
            "item": screen.item,
            "screen": screen,
            "rows": rows,
            "show_hints": screen.sees_hints,
            "guidelines_html": guidelines_html,
            "done": assignment.status != Assignment.Status.ASSIGNED,
            "labelled": screen.labelled,
            "missing_step_ids": screen.missing_step_ids,
        },
    )


@require_POST
@login_required
def label_step(request: HttpRequest, project_id: int, assignment_id: int, step_id: int) -> HttpResponse:
    raw = request.POST.get("value", "")
    try:
        if raw == "":
            assignment_step_label_clear(
                user=request.user, project_id=project_id, assignment_id=assignment_id, step_id=step_id
            )
        else:
            assignment_step_label_set(
                user=request.user,
                project_id=project_id,
                assignment_id=assignment_id,
                step_id=step_id,
                value=_int_or_text(raw),  # not a number: rejected after the access checks
            )
    except AssignmentClosed:
        return _plain("This item is already finished.", status=409)
    except LabelRejected as exc:
        return _plain(f"Bad label: {exc}", status=400)  # plain text: the value is the sender's, never markup
    # The page saves through the JSON API (static/js/label.js); this is the form without JavaScript.
    return redirect("label", project_id=project_id, assignment_id=assignment_id)


def _plain(text: str, *, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _int_or_text(raw: str) -> int | str:
    try:
        return int(raw)
    except ValueError:
        return raw


def _seconds(request: HttpRequest) -> int:
    try:
        return max(0, min(int(request.POST.get("seconds", "0")), 6 * 3600))
    except ValueError:
        return 0


@require_POST
@login_required
def submit(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    try:
        member_assignment_submit(
            user=request.user,
            project_id=project_id,
            assignment_id=assignment_id,
            seconds_spent=_seconds(request),
            cannot_judge_reason=request.POST.get("cannot_judge_reason", ""),
        )
    except (SubmitRejected, AssignmentClosed) as exc:
        if request.headers.get("HX-Request"):
            return _plain(str(exc), status=422)
        from django.contrib import messages

        messages.error(request, str(exc))
        return redirect("label", project_id=project_id, assignment_id=assignment_id)
    return _to_next(request, project_id)


@require_POST
@login_required
def skip(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_member(request.user, project_id, assignment_id)
    try:
        assignment_skip(
            assignment=assignment,
            reason=request.POST.get("reason", ""),
            flag_bad_problem=request.POST.get("flag") == "1",
        )
    except SubmitRejected as exc:
        return _plain(str(exc), status=409)
    return _to_next(request, project_id)


@require_POST
@login_required
def heartbeat(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_member(request.user, project_id, assignment_id)
    if assignment.status == Assignment.Status.ASSIGNED:
        assignment_add_time(assignment=assignment, seconds=_seconds(request))
    return HttpResponse(status=204)


def _to_next(request: HttpRequest, project_id: int) -> HttpResponse:
    """After a submit or skip (a POST already), straight on to the next item."""
    return _take_next(request, project_for_member(request.user, project_id))


def _token_user(request: HttpRequest):
    """The user of an `Authorization: Token ...` header, so API clients can fetch images too."""
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.exceptions import AuthenticationFailed

    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None


def image_file(request: HttpRequest, sha256: str) -> HttpResponse:
    """An image, to members of a project that uses it (staff: any); session or API token."""
    if not request.user.is_authenticated:
        token_user = _token_user(request)
        if token_user is None:
            from django.contrib.auth.views import redirect_to_login

            return redirect_to_login(request.get_full_path())
        request.user = token_user
    image = Image.objects.filter(sha256=sha256).first()
    if image is None:
        raise Http404("No such image.")
    if not request.user.is_staff:
        projects = image.item_images.values_list("item__project_id", flat=True)
        if not Membership.objects.filter(user=request.user, project_id__in=projects).exists():
            raise Http404("No such image.")
    response = FileResponse(image.file.open("rb"), content_type=f"image/{image.format.lower()}")
    response["Cache-Control"] = "private, max-age=86400"
    return response


@require_POST
@login_required
def prefetch_next(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    """Reserve the item after this one and tell the page what to fetch ahead, so moving on costs no wait."""
    from django.http import JsonResponse

    current = assignment_for_member(request.user, project_id, assignment_id)
    project = current.solution.project
    upcoming = next_assignment(project=project, annotator=request.user, exclude=current)
    if upcoming is None:
        return JsonResponse({"url": None, "images": []})
    images = [
        reverse("image", kwargs={"sha256": sha})
        for sha in upcoming.solution.item.item_images.order_by("position").values_list("image__sha256", flat=True)
    ]
    return JsonResponse(
        {
            "url": reverse("label", kwargs={"project_id": project.id, "assignment_id": upcoming.id}),
            "images": images,
        }
    )
