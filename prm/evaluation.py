"""Evaluate a PRM version on its project's held-out human gold: the validation items of the training split.

The held-out set is prm.training_data's permanent split (prm.models.ItemSplit): an item held out
once stays held out, so no version trains on an item a candidate and the live version are compared
on. Within those items only GOLD labels count (adjudicated or imported; prm.core.merge with gold
only), never live votes or machine labels. Metrics (docs/DESIGN.md "Evaluation"):

- step macro F1 (VisualProcessBench) at 0.5 and at the best threshold, overall and per data source;
- first-error F1 (ProcessBench, as its scripts): every solution whose first error is known, per
  data source, then averaged;
- Best-of-N on held-out items with at least two solutions of known outcome (Solution.is_correct).

The fingerprint of the held-out set (solution ids, gold values) tells whether two evaluations can
be compared: the registry re-evaluates the live version when it was measured on another set.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import GoldLabel, Item, ItemImage, Project, Solution, Step
from annotation.steps import merge_steps
from prm.core.answers import extract_final_answer, normalise_text, option_letter
from prm.core.merge import MergePolicy, solution_labels
from prm.core.metrics import (
    Candidate,
    ScoredSolution,
    aggregate_step_scores,
    best_of_n,
    best_threshold_step_f1,
    processbench_f1,
    step_f1,
)
from prm.core.training_config import TrainConfig
from prm.models import Evaluation, PRMVersion
from prm.training_data import training_set_build

if TYPE_CHECKING:  # torch loads only where a model is scored, not in every web process
    from prm.core.scoring import PRMScorer

HELD_OUT_SPLIT = "held-out-gold"
HEADLINE_METRIC = "gold_macro_f1"
CHANCE_MACRO_F1 = 0.5
# Evaluation reads gold only: the merge resolver with human and machine labels switched off.
GOLD_ONLY = MergePolicy(use_human=False, use_machine=False)


def gold_values(gold: Sequence[int | None]) -> list[int | None]:
    """Per step: the gold value (+1 / 0 / -1) or None (not judged), as the merge resolver reads it."""
    none = [None] * len(gold)
    return [label.value for label in solution_labels(gold=gold, human=none, mc_scores=none, imported=none, policy=GOLD_ONLY)]


@dataclass
class HeldOutSolution:
    solution_id: int
    steps: list[str]  # merged to the step cap the version was trained with
    gold: list[int | None]  # per merged step: +1 / -1, 0 neutral, None no gold (both left out of step F1)
    is_correct: bool | None
    vote_answer: str | None  # normalised final answer, for majority vote


@dataclass
class HeldOutItem:
    item_id: int
    question: str
    data_source: str
    image_files: list[str]
    solutions: list[HeldOutSolution] = field(default_factory=list)


@dataclass
class HeldOutSet:
    items: list[HeldOutItem]
    seed: int
    validation_fraction: float

    def fingerprint(self) -> str:
        payload = [(s.solution_id, s.gold, s.is_correct) for item in self.items for s in item.solutions]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]

    @property
    def num_gold_steps(self) -> int:
        return sum(label in (1, -1) for item in self.items for s in item.solutions for label in s.gold)


def vote_key(answer: str | None, options: Sequence[str] | None = None) -> str | None:
    """The form answers are counted in for majority vote: the option letter, else normalised text."""
    if answer is None or not answer.strip():
        return None
    if options:
        letter = option_letter(answer, options)
        if letter:
            return letter
    return normalise_text(answer) or None


def merge_gold(gold: list[int | None], *, max_steps: int) -> list[int | None]:
    """Gold of the chunks merge_steps makes: -1 if any step is, else None if one is not judged,
    +1 if all are +1, else 0 (neutral)."""
    if len(gold) <= max_steps:
        return list(gold)
    size = -(-len(gold) // max_steps)
    chunks = [gold[start : start + size] for start in range(0, len(gold), size)]
    return [
        -1 if -1 in chunk else (None if None in chunk else (1 if all(v == 1 for v in chunk) else 0)) for chunk in chunks
    ]


def _policy_and_cap(version: PRMVersion) -> tuple[MergePolicy, int]:
    run = version.created_from
    policy = MergePolicy.from_dict(run.merge_policy) if run and run.merge_policy else MergePolicy()
    cap = (run.config or {}).get("max_steps_per_solution") if run else None
    return policy, int(cap or TrainConfig.max_steps_per_solution)


def held_out_set_build(*, project: Project, policy: MergePolicy, max_steps_per_solution: int) -> HeldOutSet:
    """Validation items of `policy`'s split; their solutions with a gold label or a known outcome."""
    split = training_set_build(project=project, policy=policy, max_steps_per_solution=max_steps_per_solution)
    item_ids = sorted({example.item_id for example in split.validation})
    steps: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for step_id, solution_id, text in (
        Step.objects.filter(solution__item_id__in=item_ids).order_by("solution_id", "index")
        .values_list("id", "solution_id", "text")
    ):
        steps[solution_id].append((step_id, text))
    gold = dict(GoldLabel.objects.filter(step__solution__item_id__in=item_ids).values_list("step_id", "value"))
    images: dict[int, list[str]] = defaultdict(list)
    for item_id, name in (
        ItemImage.objects.filter(item_id__in=item_ids).order_by("item_id", "position").values_list("item_id", "image__file")
    ):
        images[item_id].append(name)
    items = {
        item.id: HeldOutItem(item_id=item.id, question=item.question, data_source=item.data_source,
                             image_files=images.get(item.id, []))
        for item in Item.objects.filter(id__in=item_ids).only("id", "question", "data_source", "options")
    }
    options = dict(Item.objects.filter(id__in=item_ids).values_list("id", "options"))
    for solution in Solution.objects.filter(item_id__in=item_ids).order_by("item_id", "id").only(
        "id", "item_id", "response", "final_answer", "is_correct"
    ):
        rows = steps.get(solution.id)
        if not rows:
            continue
        step_gold = gold_values([gold.get(step_id) for step_id, _ in rows])
        has_gold = any(value is not None for value in step_gold)
        if not has_gold and solution.is_correct is None:
            continue
        answer = solution.final_answer or extract_final_answer(solution.response)
        items[solution.item_id].solutions.append(HeldOutSolution(
            solution_id=solution.id,
            steps=merge_steps([text for _, text in rows], max_steps=max_steps_per_solution),
            gold=merge_gold(step_gold, max_steps=max_steps_per_solution),
            is_correct=solution.is_correct,
            vote_answer=vote_key(answer, options.get(solution.item_id)),
        ))
    return HeldOutSet(
        items=[item for item_id, item in sorted(items.items()) if item.solutions],
        seed=policy.seed, validation_fraction=policy.validation_fraction,
    )


def item_images(image_files: Sequence[str]) -> list[PILImage.Image]:
    decoded = []
    for name in image_files:
        with default_storage.open(name, "rb") as handle:
            decoded.append(PILImage.open(handle).convert("RGB"))
    return decoded


def score_held_out(*, scorer: PRMScorer, held_out: HeldOutSet) -> dict[int, list[float]]:
    """Step scores per solution id; each item's solutions go through the scorer as one batch."""
    scores: dict[int, list[float]] = {}
    for item in held_out.items:
        batch = scorer.score_solutions(
            question=item.question, solutions=[s.steps for s in item.solutions], images=item_images(item.image_files)
        )
        for solution, step_scores in zip(item.solutions, batch, strict=True):
            scores[solution.solution_id] = step_scores
    return scores


def held_out_metrics(*, held_out: HeldOutSet, scores: dict[int, list[float]], aggregation: str = "mean") -> dict[str, Any]:
    """Every metric of docs/DESIGN.md "Evaluation" from step scores; {} parts are left out when there is no data."""
    judged = [
        ScoredSolution(gold=s.gold, scores=scores[s.solution_id], data_source=item.data_source)
        for item in held_out.items for s in item.solutions if any(v in (1, -1) for v in s.gold)
    ]
    metrics: dict[str, Any] = {
        "split": HELD_OUT_SPLIT, "fingerprint": held_out.fingerprint(), "seed": held_out.seed,
        "validation_fraction": held_out.validation_fraction, "items": len(held_out.items),
        "solutions": sum(len(item.solutions) for item in held_out.items), "gold_steps": held_out.num_gold_steps,
    }
    if judged:
        at_half, best = step_f1(judged), best_threshold_step_f1(judged)
        metrics.update({
            "macro_f1": at_half.macro_f1, "f1_correct": at_half.f1_correct, "f1_incorrect": at_half.f1_incorrect,
            "num_steps": at_half.num_steps, "per_source": at_half.per_source,
            "best_threshold": best.threshold, "best_macro_f1": best.macro_f1, "best_per_source": best.per_source,
        })
        metrics["first_error"] = first_error_summary(processbench_f1(judged))
    questions = [
        [Candidate(final_answer=s.vote_answer, is_correct=bool(s.is_correct),
                   score=aggregate_step_scores(scores[s.solution_id], method=aggregation))
         for s in item.solutions if s.is_correct is not None]
        for item in held_out.items
    ]
    questions = [candidates for candidates in questions if len(candidates) >= 2]
    if questions:
        report = best_of_n(questions)
        metrics["best_of_n"] = {
            "prm_accuracy": report.prm_accuracy, "pass_at_1": report.pass_at_1,
            "majority_vote": report.majority_vote, "oracle": report.oracle, "num_questions": report.num_questions,
        }
    return metrics


def first_error_summary(report) -> dict[str, Any]:
    """The JSON of a ProcessBenchReport: the average over subsets ("f1"), the solutions counted, and
    each subset's figures."""
    subsets = report.per_subset.values()
    return {
        "f1": report.average_f1, "threshold": report.threshold,
        "num_erroneous": sum(r.num_erroneous for r in subsets), "num_correct": sum(r.num_correct for r in subsets),
        "num_unjudged": sum(r.num_unjudged for r in subsets),
        "per_subset": {
            name: {"f1": r.f1, "error_accuracy": r.error_accuracy, "correct_accuracy": r.correct_accuracy,
                   "num_erroneous": r.num_erroneous, "num_correct": r.num_correct, "num_unjudged": r.num_unjudged}
            for name, r in report.per_subset.items()
        },
    }


def version_held_out_set(version: PRMVersion) -> HeldOutSet:
    policy, cap = _policy_and_cap(version)
    return held_out_set_build(project=version.project, policy=policy, max_steps_per_solution=cap)


def evaluation_create(*, version: PRMVersion, held_out: HeldOutSet | None = None) -> Evaluation:
    """Score `version` on the held-out gold (its own split unless one is given) and store the result:
    an Evaluation row, and the headline numbers in version.metrics."""
    held_out = held_out if held_out is not None else version_held_out_set(version)
    from prm.core.scoring import PRMScorer

    scores = score_held_out(scorer=PRMScorer(version.directory), held_out=held_out) if held_out.items else {}
    metrics = held_out_metrics(held_out=held_out, scores=scores)
    evaluation = Evaluation.objects.create(version=version, split=HELD_OUT_SPLIT, metrics=metrics)
    headline = {
        HEADLINE_METRIC: metrics.get("macro_f1"),
        "gold_best_macro_f1": metrics.get("best_macro_f1"),
        "gold_first_error_f1": (metrics.get("first_error") or {}).get("f1"),
        "gold_best_of_n": (metrics.get("best_of_n") or {}).get("prm_accuracy"),
        "gold_steps": metrics["gold_steps"],
        "gold_evaluation_id": evaluation.pk,
    }
    PRMVersion.objects.filter(pk=version.pk).update(metrics={**version.metrics, **headline})
    version.metrics = {**version.metrics, **headline}
    return evaluation
