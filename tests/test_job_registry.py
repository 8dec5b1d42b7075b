"""One explicit table of job kinds and their runners; nothing registers itself when an app loads."""

from __future__ import annotations

from django.apps import AppConfig, apps

from workers import (
    evaluate_runner,
    export_runner,
    import_runner,
    judge_runner,
    mc_runner,
    prelabel_runner,
    train_runner,
)
from workers.models import Job
from workers.registry import RUNNERS, runner_for


def test_every_job_kind_has_its_runner():
    assert set(RUNNERS) == set(Job.Kind.values)
    assert RUNNERS == {
        "export": export_runner.run_export,
        "import": import_runner.run_import,
        "sample_solutions": mc_runner.run_sample_solutions,
        "mc_label": mc_runner.run_mc_label,
        "prm_prelabel": prelabel_runner.run_prm_prelabel,
        "train": train_runner.run_training,
        "evaluate": evaluate_runner.run_evaluation,
        "judge": judge_runner.run_judge_labels,
    }
    assert runner_for("no such kind") is None


def test_no_app_registers_anything_when_it_loads():
    # Runners, signal receivers and the like used to be wired up by imports in ready().
    for name in ("annotation", "prm", "workers"):
        assert type(apps.get_app_config(name)).ready is AppConfig.ready, name
