"""ProcessBench first-error F1 as ProcessBench's own scripts compute it, on the real gsm8k split:
all 400 solutions count (207 erroneous), with fixed synthetic scores, against a hand computation."""

from __future__ import annotations

import json

import pytest

from annotation.services.dataset_import import dataset_import
from prm.benchmark import benchmark_items
from prm.core.metrics import ScoredSolution, processbench_f1
from prm.evaluation import HeldOutItem, HeldOutSet, HeldOutSolution, held_out_metrics
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db


def synthetic_prediction(external_id: str, n_steps: int, first_error: int) -> int:
    """A fixed, varied guess of the first wrong step: exact, "no error", or the last step."""
    kind = sum(map(ord, external_id)) % 3
    return first_error if kind == 0 else (-1 if kind == 1 else n_steps - 1)


def scores_for(prediction: int, n_steps: int) -> list[float]:
    """Scores whose first value below 0.5 is at `prediction` (none when -1)."""
    return [0.9 if i < prediction or prediction == -1 else (0.1 if i == prediction else 0.3) for i in range(n_steps)]


def test_first_error_f1_on_all_400_gsm8k_solutions(project):
    path = shared_data("processbench-gsm8k/gsm8k.json")
    raw = json.loads(path.read_text())
    dataset_import(project=project, format_name="processbench", path=path)

    # By hand, from the raw file (ProcessBench's run_eval: accuracy on label != -1 and on label == -1).
    predictions = {r["id"]: synthetic_prediction(r["id"], len(r["steps"]), r["label"]) for r in raw}
    erroneous = [predictions[r["id"]] == r["label"] for r in raw if r["label"] != -1]
    correct = [predictions[r["id"]] == -1 for r in raw if r["label"] == -1]
    assert (len(erroneous), len(correct)) == (207, 193)
    error_accuracy, correct_accuracy = sum(erroneous) / 207, sum(correct) / 193
    expected_f1 = 2 * error_accuracy * correct_accuracy / (error_accuracy + correct_accuracy)

    items = benchmark_items(project=project)
    solutions = [
        ScoredSolution(gold=s.gold, scores=scores_for(predictions[item.external_id], len(s.steps)),
                       data_source=item.data_source)
        for item in items for s in item.solutions
    ]
    assert len(solutions) == 400
    report = processbench_f1(solutions)
    (subset,) = report.per_subset.values()
    assert (subset.num_erroneous, subset.num_correct, subset.num_unjudged) == (207, 193, 0)
    assert subset.error_accuracy == pytest.approx(error_accuracy)
    assert subset.correct_accuracy == pytest.approx(correct_accuracy)
    assert subset.f1 == pytest.approx(expected_f1)
    assert report.average_f1 == pytest.approx(expected_f1)
    assert 0 < expected_f1 < 1

    # The held-out evaluation counts the same solutions (it used to keep only fully labelled ones).
    held_out = HeldOutSet(items=[
        HeldOutItem(item_id=i, question=item.question, data_source=item.data_source, image_files=[], solutions=[
            HeldOutSolution(solution_id=s.solution_id, steps=s.steps, gold=s.gold, is_correct=None, vote_answer=None)
            for s in item.solutions])
        for i, item in enumerate(items)], seed=0, validation_fraction=0)
    scores = {s.solution_id: scores_for(predictions[item.external_id], len(s.steps))
              for item in items for s in item.solutions}
    first_error = held_out_metrics(held_out=held_out, scores=scores)["first_error"]
    assert first_error["f1"] == pytest.approx(expected_f1)
    assert first_error["per_subset"]["gsm8k"]["num_erroneous"] == 207
