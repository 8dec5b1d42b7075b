"""Retraining when enough new labels arrived: start a training run (a "train" job) for a project.

Called by the beat task (workers.tasks.retrain_if_due); the schedule itself is prm.schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models.functions import Coalesce

from annotation.models import Project
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig
from prm.models import TrainingRun
from prm.schedule import new_labels_since
from workers.training_services import training_run_start

# Decided per machine by the runner; a copied config must not carry the last machine's choice.
MACHINE_CHOICES = ("bf16", "gradient_checkpointing")


@dataclass(frozen=True)
class RetrainOutcome:
    started: bool
    reason: str
    new_labels: int
    run: TrainingRun | None = None


def _last_run_start(project: Project) -> datetime | None:
    """When the last successful run read its data (its start; its creation if it never recorded one)."""
    run = (
        TrainingRun.objects.filter(project=project, status=TrainingRun.Status.DONE)
        .annotate(began=Coalesce("started_at", "created_at")).order_by("-began", "-id").first()
    )
    return run.began if run else None


def _training_settings(project: Project, config: dict | None, merge_policy: dict | None) -> tuple[TrainConfig, MergePolicy]:
    """The schedule's settings; missing ones are those of the project's last run (else the defaults)."""
    last = TrainingRun.objects.filter(project=project).order_by("-created_at", "-id").first()
    base_config = {k: v for k, v in (last.config if last else {}).items() if k not in MACHINE_CHOICES}
    base_policy = dict(last.merge_policy) if last else {}
    return (
        TrainConfig.from_dict({**base_config, **(config or {})}),
        MergePolicy.from_dict({**base_policy, **(merge_policy or {})}),
    )


def training_run_start_if_due(*, project: Project, min_new_labels: int, config: dict | None = None,
                   merge_policy: dict | None = None) -> RetrainOutcome:
    """Start a training run if at least `min_new_labels` new labels arrived since the last run.

    Not while a run is queued or running. The project row is locked, so two beat ticks at once
    start one run at most.
    """
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        if TrainingRun.objects.filter(project=project, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).exists():
            return RetrainOutcome(False, "a training run is already queued or running", 0)
        count = new_labels_since(project=project, since=_last_run_start(project))
        if count < min_new_labels:
            return RetrainOutcome(False, f"{count} new labels since the last run, fewer than {min_new_labels}", count)
        train_config, policy = _training_settings(project, config, merge_policy)
        if not train_config.backbone:
            return RetrainOutcome(False, "no backbone: give one to setup_retraining or train once by hand", count)
        run = training_run_start(project=project, config=train_config, merge_policy=policy)
    return RetrainOutcome(True, f"{count} new labels: started training run {run.pk}", count, run)
