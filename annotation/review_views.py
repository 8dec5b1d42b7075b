"""Review pages: reviewers see disputed solutions, every label side by side, and set the gold label."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.access import project_for_reviewer
from annotation.models import Solution, Step
from annotation.quality import gold_accuracy
from annotation.review import review_queue, review_rows
from annotation.services.labels import LabelRejected, gold_label_set


@login_required
def review_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_reviewer(request.user, project_id)
    show_all = request.GET.get("all") == "1"
    return render(
        request,
        "annotation/review_list.html",
        {
            "project": project,
            "candidates": review_queue(project=project, include_adjudicated=show_all),
            "show_all": show_all,
            "gold_accuracy": gold_accuracy(project=project),
        },
    )


@login_required
def review_solution(request: HttpRequest, project_id: int, solution_id: int) -> HttpResponse:
    project = project_for_reviewer(request.user, project_id)
    solution = get_object_or_404(Solution.objects.select_related("item"), pk=solution_id, project=project)
    names, rows = review_rows(solution=solution)
    return render(
        request,
        "annotation/review.html",
        {
            "project": project,
            "solution": solution,
            "item": solution.item,
            "images": list(solution.item.item_images.select_related("image").order_by("position")),
            "names": names,
            "rows": rows,
            "has_judge": any(row["judge"] for row in rows),
        },
    )


@require_POST
@login_required
def review_set_gold(request: HttpRequest, project_id: int, solution_id: int, step_id: int) -> HttpResponse:
    project = project_for_reviewer(request.user, project_id)
    step = get_object_or_404(Step, pk=step_id, solution_id=solution_id, solution__project=project)
    try:
        gold_label_set(step=step, reviewer=request.user, value=int(request.POST.get("value", "")))
    except (ValueError, LabelRejected) as exc:
        return HttpResponse(f"Bad label: {exc}", status=400)
    if not request.headers.get("HX-Request"):
        return redirect("review-solution", project_id=project.id, solution_id=solution_id)
    names, rows = review_rows(solution=step.solution)
    row = next(r for r in rows if r["step"].id == step.id)
    return render(request, "annotation/review.html#review-row", {
        "row": row, "project": project, "solution": step.solution, "names": names,
        "has_judge": any(r["judge"] for r in rows),
    })
