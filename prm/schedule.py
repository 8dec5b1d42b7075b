"""Scheduled retraining: start a training run when enough new human labels have arrived.

The schedule lives in the database (django-celery-beat): one IntervalSchedule + PeriodicTask per
project, editable in the Django admin; its kwargs hold the threshold, optional training settings and
the promotion margin. Beat calls prm.tasks.retrain_if_due, which calls `retrain_if_due` below; the
finished run's candidate is then evaluated and promoted or not (prm.evaluate_runner).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models.functions import Coalesce
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotation.models import GoldLabel, HumanLabel, Project
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig
from prm.models import TrainingRun
from prm.registry import retraining_task_name
from prm.services import training_run_start

RETRAIN_TASK = "prm.tasks.retrain_if_due"
# Decided per machine by the runner; a copied config must not carry the last machine's choice.
MACHINE_CHOICES = ("bf16", "gradient_checkpointing")


@dataclass(frozen=True)
class RetrainOutcome:
    started: bool
    reason: str
    new_labels: int
    run: TrainingRun | None = None


def new_labels_since(*, project: Project, since: datetime | None) -> int:
    """Human labels created or changed, and gold labels adjudicated, after `since` (all when None)."""
    human = HumanLabel.objects.filter(step__solution__item__project=project)
    gold = GoldLabel.objects.filter(step__solution__item__project=project, source=GoldLabel.Source.ADJUDICATED)
    if since is not None:
        human, gold = human.filter(updated_at__gt=since), gold.filter(updated_at__gt=since)
    return human.count() + gold.count()


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


def retrain_if_due(*, project: Project, min_new_labels: int, config: dict | None = None,
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


def retraining_schedule_set(*, project: Project, every_minutes: int, min_new_labels: int,
                            config: dict | None = None, merge_policy: dict | None = None,
                            margin: float | None = None, enabled: bool = True) -> PeriodicTask:
    """Create or update the project's retraining PeriodicTask (checked every `every_minutes`)."""
    if every_minutes < 1 or min_new_labels < 1:
        raise ValueError("every_minutes and min_new_labels must be at least 1")
    if config:
        TrainConfig.from_dict(config)  # refuse unknown or invalid settings now, not at 3 a.m.
    if merge_policy:
        MergePolicy.from_dict(merge_policy)
    interval, _ = IntervalSchedule.objects.get_or_create(every=every_minutes, period=IntervalSchedule.MINUTES)
    kwargs: dict[str, Any] = {"project_id": project.pk, "min_new_labels": min_new_labels}
    if config:
        kwargs["config"] = config
    if merge_policy:
        kwargs["merge_policy"] = merge_policy
    if margin is not None:
        kwargs["margin"] = margin
    task, _ = PeriodicTask.objects.update_or_create(
        name=retraining_task_name(project),
        defaults={"interval": interval, "task": RETRAIN_TASK, "kwargs": json.dumps(kwargs), "enabled": enabled,
                  "description": f"Retrain the PRM of {project.name} after {min_new_labels} new labels."},
    )
    return task
