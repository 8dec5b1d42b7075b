"""The labelling pages: next item, the labelling page, saving one label, submit, skip, images.

Views only parse input, check access, call a service and render. Labels are saved one at a
time (htmx posts returning the updated step row), so a reload or a closed tab loses nothing.
"""

from __future__ import annotations

import json

import markdown
import nh3
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.models import Assignment, HumanLabel, Image, Membership
from annotation.permissions import assignment_for_member, project_for_member
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
from annotation.services.statements import assignment_missing_step_ids
from annotation.services.submit import member_assignment_submit
from annotation.visibility import sees_machine_hints, step_hints


@login_required
def next_item(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_member(request.user, project_id)
    assignment = next_assignment(project=project, annotator=request.user)
    if assignment is None:
        return render(request, "annotation/queue_empty.html", {"project": project})
    return redirect("label", project_id=project.id, assignment_id=assignment.id)


def _step_rows(assignment: Assignment, show_hints: bool) -> list[dict]:
    steps = list(assignment.solution.steps.order_by("index"))
    mine = dict(
        HumanLabel.objects.filter(step__in=steps, annotator=assignment.annotator).values_list("step_id", "value")
    )
    hints = step_hints([s.id for s in steps]) if show_hints else {}
    return [{"step": s, "value": mine.get(s.id), "hints": hints.get(s.id, {})} for s in steps]


@login_required
def label_page(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_member(request.user, project_id, assignment_id)
    solution = assignment.solution
    item = solution.item
    project = item.project
    show_hints = sees_machine_hints(request.user, project)
    rows = _step_rows(assignment, show_hints)
    guidelines_html = nh3.clean(markdown.markdown(project.guidelines or "_No guidelines yet._"))
    return render(
        request,
        "annotation/label.html",
        {
            "project": project,
            "assignment": assignment,
            "solution": solution,
            "item": item,
            "images": list(item.item_images.select_related("image").order_by("position")),
            "rows": rows,
            "show_hints": show_hints,
            "guidelines_html": guidelines_html,
            "done": assignment.status != Assignment.Status.ASSIGNED,
            "labelled": sum(1 for r in rows if r["value"] is not None),
            "missing_step_ids": assignment_missing_step_ids(assignment_id=assignment.id, annotator_id=assignment.annotator_id),
        },
    )


@require_POST
@login_required
def label_step(request: HttpRequest, project_id: int, assignment_id: int, step_id: int) -> HttpResponse:
    raw = request.POST.get("value", "")
    try:
        if raw == "":
            saved = assignment_step_label_clear(
                user=request.user, project_id=project_id, assignment_id=assignment_id, step_id=step_id
            )
        else:
            saved = assignment_step_label_set(
                user=request.user,
                project_id=project_id,
                assignment_id=assignment_id,
                step_id=step_id,
                value=_int_or_text(raw),  # not a number: rejected after the access checks
            )
        target, value = saved.target, saved.write.value
    except AssignmentClosed:
        return HttpResponse("This item is already finished.", status=409)
    except LabelRejected as exc:
        return HttpResponse(f"Bad label: {exc}", status=400)
    if not request.headers.get("HX-Request"):
        return redirect("label", project_id=project_id, assignment_id=assignment_id)
    # The row is drawn from what the save already read: no second round of queries.
    row = {
        "step": {"id": target.step_id, "index": target.step_index, "text": target.step_text},
        "value": value,
        "hints": target.hints,
    }
    context = {
        "row": row,
        "assignment": {"id": target.assignment_id},
        "project": {"id": target.project_id},
        "show_hints": target.sees_hints,
        "done": False,
    }
    response = render(request, "annotation/label.html#step-row", context)
    # The steps still to label before submit, decided on the server (the page need not derive the rule).
    response["X-Missing-Step-Ids"] = json.dumps(saved.missing_step_ids)
    return response


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
            return HttpResponse(str(exc), status=422)
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
        return HttpResponse(str(exc), status=409)
    return _to_next(request, project_id)


@require_POST
@login_required
def heartbeat(request: HttpRequest, project_id: int, assignment_id: int) -> HttpResponse:
    assignment = assignment_for_member(request.user, project_id, assignment_id)
    if assignment.status == Assignment.Status.ASSIGNED:
        assignment_add_time(assignment=assignment, seconds=_seconds(request))
    return HttpResponse(status=204)


def _to_next(request: HttpRequest, project_id: int) -> HttpResponse:
    url = reverse("next-item", kwargs={"project_id": project_id})
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


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
    project = current.solution.item.project
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
