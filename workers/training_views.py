"""PRM pages for project admins: the training runs list with a start form, one run's live curves, and
the benchmark page (a version scored on a whole imported benchmark project, beside the paper)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from annotation.access import project_for_admin
from annotation.models import Role
from prm.benchmark import (
    PAPER_MACRO_F1,
    benchmark_reports,
    benchmark_solution_count,
    judge_benchmark_evaluate,
    judge_sources,
    report_rows,
)
from prm.core.curves import run_curves
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig
from prm.models import PRMVersion, TrainingRun
from workers.evaluate_runner import benchmark_job_start
from workers.training_services import training_run_start


def _runs_page(request: HttpRequest, project, *, start_error: str = "", status: int = 200) -> HttpResponse:
    return render(request, "prm/runs.html", {
        "project": project,
        "runs": TrainingRun.objects.filter(project=project)[:50],
        "versions": PRMVersion.objects.filter(project=project)[:50],
        "defaults": TrainConfig(), "help": TrainConfig.help_texts(),
        "backbone": request.POST.get("backbone", settings.STEPMARK_DEFAULT_BACKBONE) if start_error
        else settings.STEPMARK_DEFAULT_BACKBONE,
        "start_error": start_error,
    }, status=status)


@login_required
def runs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    return _runs_page(request, project_for_admin(request.user, project_id))


@require_POST
@login_required
def run_start(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    form = request.POST
    try:
        config = TrainConfig(
            backbone=form.get("backbone", "").strip(),
            learning_rate=float(form.get("learning_rate", TrainConfig.learning_rate)),
            epochs=int(form.get("epochs", TrainConfig.epochs)),
            batch_size=int(form.get("batch_size", TrainConfig.batch_size)),
            lora=bool(form.get("lora")),
        )
        policy = MergePolicy(
            mc_label=form.get("mc_label", "value"), consensus_filter=bool(form.get("consensus_filter"))
        )
        run = training_run_start(project=project, config=config, merge_policy=policy, user=request.user)
    except ValueError as exc:  # shown under the form that caused it, with what was typed
        return _runs_page(request, project, start_error=f"Cannot start training: {exc}", status=400)
    return redirect("prm-run", project_id=project.id, run_id=run.id)


def _run_context(request: HttpRequest, project_id: int, run_id: int) -> dict:
    project = project_for_admin(request.user, project_id)
    run = get_object_or_404(TrainingRun, pk=run_id, project=project)
    curves = {name: mark_safe(svg) for name, svg in run_curves(run.history, total_steps=run.total_steps).items()}  # noqa: S308 - escaped in prm.core.curves
    return {"project": project, "run": run, "curves": curves, "last": run.history[-1] if run.history else None,
            "versions": run.versions.all()}


@login_required
def run_page(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    return render(request, "prm/run.html", _run_context(request, project_id, run_id))


@login_required
def run_progress(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    """The curves and counters, polled by htmx while the run is queued or running."""
    return render(request, "prm/run.html#run-progress", _run_context(request, project_id, run_id))


def _versions_for(user):
    """PRM versions of every project `user` administers (a benchmark project holds no versions itself)."""
    versions = PRMVersion.objects.select_related("project").order_by("-created_at", "-id")
    if not user.is_staff:
        versions = versions.filter(project__memberships__user=user, project__memberships__role=Role.ADMIN)
    return versions


@login_required
def benchmark_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    reports = benchmark_reports(project=project)
    judges = judge_sources(project=project)
    chosen = request.GET.get("judge", "")
    judge_shown = None
    if chosen and chosen in {name for name, _ in judges}:
        # Computed from the stored labels on request (a judge has no model to run here).
        judge_shown = report_rows(judge_benchmark_evaluate(project=project, source=chosen, resamples=200))
    return render(request, "prm/benchmark.html", {
        "project": project, "reports": reports, "latest": reports[0] if reports else None,
        "shown": report_rows(reports[0].metrics) if reports else None,
        "paper": PAPER_MACRO_F1, "versions": _versions_for(request.user)[:200],
        "num_solutions": benchmark_solution_count(project=project),
        "judges": judges, "judge_chosen": chosen, "judge_shown": judge_shown,
    })


@require_POST
@login_required
def benchmark_start(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_admin(request.user, project_id)
    version_id = request.POST.get("version_id", "")
    version = _versions_for(request.user).filter(pk=int(version_id)).first() if version_id.isdigit() else None
    if version is None:
        messages.error(request, "Choose a PRM version of a project you administer.")
    else:
        benchmark_job_start(version=version, project=project, user=request.user)
        messages.info(request, f"Scoring {version.name} on {project.name}: the report appears here when the job is done.")
    return redirect("prm-benchmark", project_id=project.id)
