"""Where PRM training runs and versions keep their files."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from prm.models import TrainingRun


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
