"""Scheduled retraining: start a training run when enough new human labels have arrived.

The schedule lives in the database (django-celery-beat): one IntervalSchedule + PeriodicTask per
project, editable in the Django admin; its kwargs hold the threshold, optional training settings and
the promotion margin. Beat calls the task named RETRAIN_TASK (workers.tasks), which calls
workers.retraining.training_run_start_if_due; the finished run's candidate is then evaluated and promoted or
not (workers.evaluate_runner).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotation.models import GoldLabel, HumanLabel, Project
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig
from prm.registry import retraining_task_name

RETRAIN_TASK = "workers.tasks.retrain_if_due"


def new_labels_since(*, project: Project, since: datetime | None) -> int:
    """Human labels created or changed, and gold labels adjudicated, after `since` (all when None)."""
    human = HumanLabel.objects.filter(step__solution__item__project=project)
    gold = GoldLabel.objects.filter(step__solution__item__project=project, source=GoldLabel.Source.ADJUDICATED)
    if since is not None:
        human, gold = human.filter(updated_at__gt=since), gold.filter(updated_at__gt=since)
    return human.count() + gold.count()


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
