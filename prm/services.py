"""Starting PRM training runs (and where their files live)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotation.models import Project
from prm.core.merge import MergePolicy
from prm.core.training_config import TrainConfig
from prm.models import TrainingRun
from workers.models import Job
from workers.services import job_create


def prm_root() -> Path:
    """Folder holding training runs and PRM versions: STEPMARK_PRM_DIR, else MEDIA_ROOT/prm."""
    configured = getattr(settings, "STEPMARK_PRM_DIR", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT) / "prm"


def run_directory(run: TrainingRun) -> Path:
    """Checkpoints and the final model of `run`; fixed per run, so a restarted job finds its checkpoints.

    The creation time is part of the name: ids start again after a database is reset, and a new
    run must never resume an old run's checkpoints left on disk.
    """
    return prm_root() / "runs" / f"run-{run.pk}-{run.created_at:%Y%m%dT%H%M%S%f}"


def training_run_start(*, project: Project, config: TrainConfig, merge_policy: MergePolicy, user=None) -> TrainingRun:
    """Record a training run and queue its job (kind "train") on the GPU queue."""
    if not config.backbone:
        raise ValueError("the training config names no backbone")
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project,
            config=config.to_dict(),
            merge_policy=merge_policy.to_dict(),
            created_by=user if getattr(user, "pk", None) else None,
        )
        run.checkpoint_dir = str(run_directory(run))
        run.job = job_create(kind=Job.Kind.TRAIN, project=project, params={"training_run_id": run.pk}, user=user)
        run.save(update_fields=["checkpoint_dir", "job"])
    return run
