"""Every kind of job and the runner that does one chunk of it, in one table.

Runners compute, then store results and call `chunk_finish` in one transaction, so a chunk's
results land exactly once. Imported explicitly here (not registered as a side effect of app
loading), so what runs a kind is read in one place; runners import torch only when they run.
"""

from __future__ import annotations

from collections.abc import Callable

from workers.evaluate_runner import run_evaluation
from workers.export_runner import run_export
from workers.import_runner import run_import
from workers.judge_runner import run_judge_labels
from workers.mc_runner import run_mc_label, run_sample_solutions
from workers.models import Job, JobChunk
from workers.prelabel_runner import run_prm_prelabel
from workers.train_runner import run_training

Runner = Callable[[JobChunk], dict]

RUNNERS: dict[str, Runner] = {
    Job.Kind.EXPORT: run_export,
    Job.Kind.IMPORT: run_import,
    Job.Kind.SAMPLE_SOLUTIONS: run_sample_solutions,
    Job.Kind.MC_LABEL: run_mc_label,
    Job.Kind.PRM_PRELABEL: run_prm_prelabel,
    Job.Kind.TRAIN: run_training,
    Job.Kind.EVALUATE: run_evaluation,
    Job.Kind.JUDGE: run_judge_labels,
}


def runner_for(kind: str) -> Runner | None:
    return RUNNERS.get(kind)
