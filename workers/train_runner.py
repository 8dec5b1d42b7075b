"""The "train" job: build the merged training set, train with prm.core.training, store a candidate version.

Progress is written as it happens (each optimizer step updates the run's step and history in its own
autocommit UPDATE), so the run page draws the curves live; only the final version, evaluation and
chunk completion share one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from prm.core.merge import MergePolicy
from prm.core.metrics import ScoredSolution, best_threshold_step_f1, step_f1
from prm.core.training_config import TrainConfig
from prm.models import Evaluation, PRMVersion, TrainingRun
from prm.services import run_directory
from prm.training_data import TrainingExample, example_images, training_set_build
from workers.errors import PermanentJobError, TransientJobError
from workers.evaluate_runner import evaluate_job_start
from workers.models import Job, JobChunk
from workers.services import chunk_finish, chunk_heartbeat, job_is_cancelled

if TYPE_CHECKING:
    from prm.core.training import ProgressCallback, StartCallback, TrainResult

# torch and transformers are imported inside the functions that use them, so the job registry
# (workers.registry) does not load them into every web process.


def encode_examples(processor, examples: Sequence[TrainingExample], *, config: TrainConfig | None = None):
    from prm.core.conversation import encode_conversation, label_token_ids
    from prm.core.prompts import system_prompt_text

    config = config or TrainConfig()
    label_ids = label_token_ids(processor)
    # The prompts the run records (TrainConfig), so the scorer reads the trained model the same way.
    return [
        encode_conversation(
            processor, question=e.question, steps=e.steps, images=example_images(e),
            step_labels=e.labels, label_ids=label_ids,
            system_prompt=system_prompt_text(config.system_prompt), question_format=config.prm_question,
        )
        for e in examples
    ]


def evaluate_examples(*, model_dir: Path, examples: Sequence[TrainingExample]) -> dict:
    """Step macro F1 (VisualProcessBench metric) of a model on labelled examples: at 0.5 and at the best threshold."""
    from prm.core.scoring import PRMScorer

    scorer = PRMScorer(model_dir)
    solutions = []
    for example in examples:
        scores = scorer.score_steps(question=example.question, steps=example.steps, images=example_images(example))
        judged = [(label, score) for label, score in zip(example.labels, scores, strict=True) if label is not None]
        solutions.append(ScoredSolution(gold=[1 if label else -1 for label, _ in judged], scores=[s for _, s in judged]))
    if not any(solution.gold for solution in solutions):
        return {}
    at_half, best = step_f1(solutions), best_threshold_step_f1(solutions)
    return {
        "macro_f1": at_half.macro_f1, "f1_correct": at_half.f1_correct, "f1_incorrect": at_half.f1_incorrect,
        "num_steps": at_half.num_steps, "best_threshold": best.threshold, "best_macro_f1": best.macro_f1,
    }


class TrainingCancelled(PermanentJobError):
    pass


def run_training(chunk: JobChunk) -> dict:
    run = TrainingRun.objects.select_related("project").get(job_id=chunk.job_id)
    return _train(run, chunk)


def _train(run: TrainingRun, chunk: JobChunk) -> dict:
    def on_start(total_steps: int, first_step: int) -> None:
        Job.objects.filter(pk=chunk.job_id).update(progress_total=total_steps, progress_done=first_step)

    def progress(step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if job_is_cancelled(job_id=chunk.job_id):
            raise TrainingCancelled("the job was cancelled")
        Job.objects.filter(pk=chunk.job_id).update(progress_done=step)
        chunk_heartbeat(chunk=chunk)

    def finish(result) -> None:
        chunk_finish(chunk=chunk, counts={"steps": result.steps}, progress_set=result.steps)

    result = training_run_execute(
        run=run, output_dir=run_directory(run), on_start=on_start, progress=progress, finish=finish
    )
    return {"steps": result.steps}


def training_run_execute(
    *,
    run: TrainingRun,
    output_dir: Path,
    record: bool = True,
    on_start: StartCallback | None = None,
    progress: ProgressCallback | None = None,
    finish: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    """Train `run` (its config and merge policy) on its project's merged labels into `output_dir`.

    The one training path of the train job and of `manage.py train_prm`, also under accelerate
    launch/torchrun: there every process calls this, and only the main one passes `record=True`, so
    only it writes the run's progress, the candidate version and its evaluation (train_prm already
    keeps checkpoints to the main process). `on_start`/`progress` are called after the run's own
    bookkeeping; `finish` inside the transaction that stores the version.
    """
    runs = TrainingRun.objects.filter(pk=run.pk) if record else TrainingRun.objects.none()
    try:
        return _execute(run=run, runs=runs, output_dir=output_dir, record=record, on_start=on_start,
                        progress=progress, finish=finish)
    except TransientJobError:
        raise  # retried; the next attempt resumes from the last checkpoint
    except Exception as exc:
        runs.update(status=TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now())
        raise


def _execute(*, run, runs, output_dir, record, on_start, progress, finish) -> TrainResult:
    from prm.core.conversation import load_processor
    from prm.core.training import resolve_for_this_machine, train_prm

    config = resolve_for_this_machine(TrainConfig.from_dict(run.config))
    policy = MergePolicy.from_dict(run.merge_policy)
    runs.update(status=TrainingRun.Status.RUNNING, error="", started_at=Coalesce("started_at", Now()), config=config.to_dict())
    training_set = training_set_build(
        project=run.project, policy=policy, max_steps_per_solution=config.max_steps_per_solution
    )
    if not training_set.train:
        raise PermanentJobError("no solution of this project has a labelled step under this merge policy")
    if not Path(config.backbone).exists():
        raise PermanentJobError(f"backbone folder {config.backbone} does not exist")
    examples = encode_examples(load_processor(config.backbone), training_set.train, config=config)
    runs.update(data_summary=training_set.summary())
    history: list[dict] = []

    def started(total_steps: int, first_step: int) -> None:
        # A resumed run drops the entries after its checkpoint: those steps are trained again.
        history[:] = [entry for entry in TrainingRun.objects.get(pk=run.pk).history if entry["step"] <= first_step]
        runs.update(total_steps=total_steps, step=first_step, history=history)
        if on_start is not None:
            on_start(total_steps, first_step)

    def stepped(step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        history.append({"step": step, "loss": loss, "lr": lr, "tokens_per_s": tokens_per_s, "time": timezone.now().timestamp()})
        runs.update(step=step, history=history)
        if progress is not None:
            progress(step, loss, lr, tokens_per_s)

    result = train_prm(
        config=config, examples=examples, output_dir=output_dir,
        progress=stepped if record else progress, on_start=started if record else on_start,
    )
    if not record:
        return result
    metrics = evaluate_examples(model_dir=result.model_dir, examples=training_set.validation)
    with transaction.atomic():
        version, created = PRMVersion.objects.update_or_create(
            name=f"run-{run.pk}",
            defaults={
                "project": run.project, "backbone": config.backbone, "directory": str(result.model_dir),
                "created_from": run, "metrics": metrics,
            },
        )
        if metrics:
            Evaluation.objects.create(version=version, split="validation", metrics=metrics)
        if created and version.status == PRMVersion.Status.CANDIDATE:
            # In this transaction: the evaluate job exists exactly when the candidate does.
            evaluate_job_start(version=version)
        runs.update(status=TrainingRun.Status.DONE, step=result.steps, finished_at=timezone.now())
        if finish is not None:
            finish(result)
    return result
