"""The registry page: a project's PRM versions with held-out metrics, the live marker, a macro F1 chart,
the decision history, and promote / roll back buttons for the project's admins."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST

from annotation import charts
from annotation.access import can_administer, project_for_admin, project_for_member
from prm.evaluation import HEADLINE_METRIC
from prm.models import PRMVersion, PromotionDecision
from prm.registry import RegistryError, version_promote, version_rollback

BAR_COLOR = charts.PALETTE[0]


def macro_f1_chart(versions: list[PRMVersion]) -> str:
    """Held-out gold macro F1 of each version, oldest first (the live one named as such)."""
    ordered = sorted(versions, key=lambda v: (v.created_at, v.pk))
    names = [f"{v.name} (live)" if v.status == PRMVersion.Status.LIVE else v.name for v in ordered]
    values = [v.metrics.get(HEADLINE_METRIC) for v in ordered]
    return charts.bar_chart(
        title="Held-out macro F1 per PRM version", categories=names,
        series=[charts.Series("macro F1", values, BAR_COLOR)], axis_label="macro F1 on held-out gold steps (0.5 = chance)",
        value_text=lambda v: f"{v:.3f}", tick_text=lambda v: f"{v:.1f}", max_value=1.0,
    )


@login_required
def versions_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_member(request.user, project_id)
    versions = list(PRMVersion.objects.filter(project=project).select_related("created_from")[:100])
    return render(request, "prm/versions.html", {
        "project": project,
        "versions": versions,
        "live": next((v for v in versions if v.status == PRMVersion.Status.LIVE), None),
        "chart": mark_safe(macro_f1_chart(versions)) if versions else "",  # noqa: S308 - escaped in annotation.charts
        "decisions": PromotionDecision.objects.filter(project=project).select_related("version", "previous_live", "decided_by")[:30],
        "is_admin": can_administer(request.user, project),
        "headline": HEADLINE_METRIC,
    })


@require_http_methods(["GET", "POST"])
@login_required
def version_promote_action(request: HttpRequest, project_id: int, version_id: int) -> HttpResponse:
    """GET: what making this version live changes, and a button to confirm (no JavaScript needed); POST: do it."""
    project = project_for_admin(request.user, project_id)
    version = get_object_or_404(PRMVersion, pk=version_id, project=project)
    if request.method == "GET":
        live = PRMVersion.objects.filter(project=project, status=PRMVersion.Status.LIVE).first()
        return render(request, "prm/version_promote.html", {
            "project": project, "version": version, "live": live, "headline": HEADLINE_METRIC,
        })
    try:
        decision = version_promote(version=version, user=request.user)
        messages.success(request, decision.reason)
    except RegistryError as exc:
        messages.error(request, str(exc))
    return redirect("prm-versions", project_id=project.id)


@require_POST
@login_required
def rollback_action(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    try:
        decision = version_rollback(project=project, user=request.user)
        messages.success(request, decision.reason)
    except RegistryError as exc:
        messages.error(request, str(exc))
    return redirect("prm-versions", project_id=project.id)
