"""Review pages: every solution of a project, filtered and paged; every label of a solution side by
side; the gold label set by click or key."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.access import project_for_reviewer
from annotation.models import Solution, Step
from annotation.quality import gold_accuracy
from annotation.review import (
    PAGE_SIZE,
    ReviewFilterError,
    ReviewFilters,
    next_disputed_id,
    review_choices,
    review_list_rows,
    review_neighbours,
    review_rows,
    review_solutions,
)
from annotation.services.labels import LabelRejected, gold_label_set


def _filters(request: HttpRequest) -> tuple[ReviewFilters, str | None]:
    """The filters of the request, and the error of a bad one (then no filter applies)."""
    try:
        return ReviewFilters.from_params(request.GET), None
    except ReviewFilterError as exc:
        return ReviewFilters(), str(exc)


@login_required
def review_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_reviewer(request.user, project_id)
    filters, error = _filters(request)
    listed = review_solutions(project=project, filters=filters).values_list("id", flat=True)
    page = Paginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "filters": filters,
        "filter_query": urlencode(filters.params()),
        "filter_error": error,
        "page": page,
        "rows": review_list_rows(solution_ids=list(page.object_list)),
        "total": page.paginator.count,
        "project_total": Solution.objects.filter(project=project).count(),
        "choices": review_choices(project=project),
        "next_disputed_id": next_disputed_id(project=project),
    }
    if request.headers.get("HX-Request") and not request.headers.get("HX-History-Restore-Request"):
        return render(request, "annotation/review_list.html#results", context, status=400 if error else 200)
    context["gold_accuracy"] = gold_accuracy(project=project)
    return render(request, "annotation/review_list.html", context, status=400 if error else 200)


@login_required
def review_solution(request: HttpRequest, project_id: int, solution_id: int) -> HttpResponse:
    project = project_for_reviewer(request.user, project_id)
    solution = get_object_or_404(Solution.objects.select_related("item"), pk=solution_id, project=project)
    filters, _ = _filters(request)
    names, rows = review_rows(solution=solution)
    query = urlencode(filters.params())
    neighbours = review_neighbours(project=project, filters=filters, solution_id=solution.pk)

    def solution_url(other_id: int | None) -> str | None:
        if other_id is None:
            return None
        url = reverse("review-solution", kwargs={"project_id": project.id, "solution_id": other_id})
        return f"{url}?{query}" if query else url

    list_url = reverse("review-list", kwargs={"project_id": project.id})
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
            "neighbours": neighbours,
            "previous_url": solution_url(neighbours.previous_id),
            "next_url": solution_url(neighbours.next_id),
            # The next disputed solution is looked for among all of them, so its link drops the filters.
            "next_disputed_url": None
            if neighbours.next_disputed_id is None
            else reverse("review-solution", kwargs={"project_id": project.id, "solution_id": neighbours.next_disputed_id}),
            "list_url": f"{list_url}?{query}" if query else list_url,
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
        return HttpResponse(f"Bad label: {exc}", status=400, content_type="text/plain; charset=utf-8")
    if not request.headers.get("HX-Request"):
        return redirect("review-solution", project_id=project.id, solution_id=solution_id)
    names, rows = review_rows(solution=step.solution)
    row = next(r for r in rows if r["step"].id == step.id)
    return render(request, "annotation/review.html#review-row", {
        "row": row, "project": project, "solution": step.solution, "names": names,
        "has_judge": any(r["judge"] for r in rows),
    })
