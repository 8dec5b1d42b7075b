"""Scheduled retraining: the beat task starts a run only past its threshold of new labels; the
schedule is a django-celery-beat PeriodicTask made by `setup_retraining`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from annotation.models import GoldLabel, HumanLabel
from prm.models import TrainingRun
from prm.registry import promotion_margin, retraining_task_name
from prm.schedule import new_labels_since
from tests.factories import make_solution
from workers.models import Job
from workers.tasks import retrain_if_due

BACKBONE = {"backbone": "/models/tiny-backbone"}


def _steps(project, n: int):
    solution = make_solution(project, f"item-{n}", [f"step {i}" for i in range(n)])
    return list(solution.steps.order_by("index"))


def _label(steps, annotators, value=1):
    return [HumanLabel.objects.create(step=step, annotator=annotator, value=value)
            for annotator in annotators for step in steps]


def _runs(project) -> tuple[int, int]:
    return TrainingRun.objects.filter(project=project).count(), Job.objects.filter(project=project, kind="train").count()


@pytest.mark.django_db
def test_the_task_starts_a_run_only_past_its_threshold_of_new_labels(project, make_user):
    steps = _steps(project, 4)
    ann, other = make_user("ann"), make_user("other")
    _label(steps, [ann])  # 4 labels

    reason = retrain_if_due(project.pk, min_new_labels=5, config=BACKBONE)
    assert "4 new labels" in reason and _runs(project) == (0, 0)

    _label(steps[:1], [other])  # the 5th
    reason = retrain_if_due(project.pk, min_new_labels=5, config=BACKBONE)
    run = TrainingRun.objects.get(project=project)
    assert "started training run" in reason and _runs(project) == (1, 1)
    assert run.config["backbone"] == BACKBONE["backbone"] and run.job.kind == "train"

    # While that run is queued, no second one starts, however many labels arrive.
    _label(steps[1:], [other])
    assert "already queued" in retrain_if_due(project.pk, min_new_labels=1, config=BACKBONE)
    assert _runs(project) == (1, 1)

    # Once it has run, only labels made after its start count.
    started = timezone.now()
    TrainingRun.objects.filter(pk=run.pk).update(status="done", started_at=started)
    HumanLabel.objects.filter(step__solution__item__project=project).update(updated_at=started - timedelta(seconds=1))
    assert new_labels_since(project=project, since=started) == 0
    assert "0 new labels" in retrain_if_due(project.pk, min_new_labels=2)
    label = HumanLabel.objects.filter(annotator=ann).first()
    label.value = -1
    label.save()  # a changed label counts as new
    GoldLabel.objects.create(step=steps[0], value=1, source=GoldLabel.Source.ADJUDICATED, origin="reviewer")
    GoldLabel.objects.create(step=steps[1], value=1, source=GoldLabel.Source.IMPORTED, origin="dataset")  # not new
    assert new_labels_since(project=project, since=started) == 2
    reason = retrain_if_due(project.pk, min_new_labels=2)  # no config given: the last run's settings
    assert "started training run" in reason and _runs(project) == (2, 2)
    assert TrainingRun.objects.filter(project=project).first().config["backbone"] == BACKBONE["backbone"]


@pytest.mark.django_db
def test_no_backbone_no_run_and_a_failed_run_does_not_reset_the_count(project, make_user):
    steps = _steps(project, 3)
    _label(steps, [make_user("ann")])
    assert "no backbone" in retrain_if_due(project.pk, min_new_labels=1)
    assert _runs(project) == (0, 0)
    TrainingRun.objects.create(project=project, status="failed", started_at=timezone.now(), config=BACKBONE)
    # Labels from before a failed run still count towards the next one.
    assert "started" in retrain_if_due(project.pk, min_new_labels=3)
    assert TrainingRun.objects.filter(project=project, status="queued").count() == 1


@pytest.mark.django_db
def test_setup_retraining_creates_then_updates_one_periodic_task(project):
    call_command("setup_retraining", "--project", project.name, "--every-minutes", "60", "--min-new-labels", "200",
                 "--backbone", "/models/tiny", "--margin", "0.02")
    task = PeriodicTask.objects.get(name=retraining_task_name(project))
    assert task.task == "workers.tasks.retrain_if_due" and task.enabled
    assert (task.interval.every, task.interval.period) == (60, IntervalSchedule.MINUTES)
    kwargs = json.loads(task.kwargs)
    assert kwargs == {"project_id": project.pk, "min_new_labels": 200, "config": {"backbone": "/models/tiny"},
                      "margin": 0.02}
    assert promotion_margin(project) == 0.02

    call_command("setup_retraining", "--project", project.name, "--every-minutes", "15", "--min-new-labels", "50")
    task = PeriodicTask.objects.get(name=retraining_task_name(project))
    assert PeriodicTask.objects.filter(task="workers.tasks.retrain_if_due").count() == 1
    assert task.interval.every == 15 and json.loads(task.kwargs)["min_new_labels"] == 50
    assert promotion_margin(project) == 0.01  # the default once the schedule no longer sets one

    # Beat would call the task with exactly these kwargs: they are accepted.
    assert "0 new labels" in retrain_if_due(**json.loads(task.kwargs))

    with pytest.raises(CommandError, match="no project"):
        call_command("setup_retraining", "--project", "nope")
    with pytest.raises(CommandError, match="unknown training settings"):
        call_command("setup_retraining", "--project", project.name, "--config", '{"learning_rat": 1}')
