"""Starting PRM training runs: the run's record and its "train" job, together."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction

from annotation.models import Project
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig
from prm.models import TrainingRun
from prm.services import run_directory
from workers.models import Job
from workers.services import job_create


def training_run_create(
    *, project: Project, config: TrainConfig, merge_policy: MergePolicy, user=None, output_dir: Path | None = None
) -> TrainingRun:
    """Record a training run that writes into `output_dir` (default: its own folder under prm_root())."""
    if not config.backbone:
        raise ValueError("the training config names no backbone")
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project,
            config=config.to_dict(),
            merge_policy=merge_policy.to_dict(),
            created_by=user if getattr(user, "pk", None) else None,
        )
        run.checkpoint_dir = str(output_dir if output_dir is not None else run_directory(run))
        run.save(update_fields=["checkpoint_dir"])
    return run


def training_run_start(*, project: Project, config: TrainConfig, merge_policy: MergePolicy, user=None) -> TrainingRun:
    """Record a training run and queue its job (kind "train") on the GPU queue."""
    with transaction.atomic():
        run = training_run_create(project=project, config=config, merge_policy=merge_policy, user=user)
        run.job = job_create(kind=Job.Kind.TRAIN, project=project, params={"training_run_id": run.pk}, user=user)
        run.save(update_fields=["job"])
    return run
