"""Celery tasks of the model side (thin: the work is in prm.schedule and the job runners)."""

from __future__ import annotations

import logging

from celery import shared_task

from annotation.models import Project
from prm.schedule import retrain_if_due as retrain_if_due_service

logger = logging.getLogger(__name__)


@shared_task(name="prm.tasks.retrain_if_due", ignore_result=True)
def retrain_if_due(project_id: int, min_new_labels: int = 200, config: dict | None = None,
                   merge_policy: dict | None = None, margin: float | None = None) -> str:
    """Beat's entry point. `margin` is read by the registry from the schedule itself; accepted here so
    the PeriodicTask's kwargs stay one editable record."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return f"no project {project_id}"
    outcome = retrain_if_due_service(
        project=project, min_new_labels=min_new_labels, config=config, merge_policy=merge_policy
    )
    logger.info("retraining %s: %s", project.name, outcome.reason)
    return outcome.reason
