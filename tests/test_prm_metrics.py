"""PRM metrics on small hand-computed examples (the arithmetic is in the comments)."""

from __future__ import annotations

import pytest

from prm.core.metrics import (
    BestOfNReport,
    Candidate,
    ScoredSolution,
    best_of_n,
    best_threshold_step_f1,
    binary_macro_f1,
    f1_score,
    first_error_f1,
    gold_first_error,
    majority_answer,
    predicted_first_error,
    processbench_f1,
    step_benchmark_report,
    step_f1,
)
from prm.core.metrics import auroc as auroc_of
from prm.core.metrics import bootstrap_macro_f1_interval as bootstrap

# Source "a": judged steps (gold, score) = (+,0.9) (+,0.4) (-,0.3); the neutral step (0, 0.8) is left out.
# Source "b": (+,0.7) (-,0.6) (-,0.55).
BENCH = [
    ScoredSolution(gold=[1, 1, -1, 0], scores=[0.9, 0.4, 0.3, 0.8], data_source="a"),
    ScoredSolution(gold=[1, -1, -1], scores=[0.7, 0.6, 0.55], data_source="b"),
]


def test_step_f1_at_half():
    # Predicted correct (score > 0.5): a: + - -; b: + + +.
    # Correct class: TP 2 (a0, b0), FP 2 (b1, b2), FN 1 (a1) -> F1 = 4 / (4 + 2 + 1) = 4/7.
    # Incorrect class: TP 1 (a2), FP 1 (a1), FN 2 (b1, b2) -> F1 = 2 / (2 + 1 + 2) = 2/5.
    # Macro = (4/7 + 2/5) / 2 = 17/35.
    report = step_f1(BENCH)
    assert report.threshold == 0.5
    assert report.num_steps == 6
    assert report.f1_correct == pytest.approx(4 / 7)
    assert report.f1_incorrect == pytest.approx(2 / 5)
    assert report.macro_f1 == pytest.approx(17 / 35)
    # a: correct TP1 FP0 FN1 -> 2/3; incorrect TP1 FP1 FN0 -> 2/3; macro 2/3.
    # b: correct TP1 FP2 FN0 -> 2/4; incorrect TP0 FP0 FN2 -> 0; macro 1/4.
    assert report.per_source == pytest.approx({"a": 2 / 3, "b": 1 / 4})


def test_step_f1_best_threshold():
    # t = 0.35: correct TP3 FP2 FN0 -> 6/8; incorrect TP1 FP0 FN2 -> 2/4; macro 0.625.
    # t = 0.65: correct TP2 FP0 FN1 -> 4/5; incorrect TP3 FP1 FN0 -> 6/7; macro (4/5 + 6/7)/2 = 29/35.
    best = best_threshold_step_f1(BENCH, candidates=[0.35, 0.5, 0.65])
    assert best.threshold == 0.65
    assert best.macro_f1 == pytest.approx(29 / 35)
    # On the default 0.00..1.00 grid every t in [0.60, 0.70) gives 29/35 and the lowest is kept
    # (0.6 > 0.60 is false, so b1 is already predicted incorrect at 0.60).
    grid_best = best_threshold_step_f1(BENCH)
    assert grid_best.threshold == pytest.approx(0.6)
    assert grid_best.macro_f1 == pytest.approx(29 / 35)


def test_f1_helpers_and_bad_input():
    assert f1_score(true_positive=0, false_positive=0, false_negative=0) == 0.0
    assert f1_score(true_positive=1, false_positive=1, false_negative=0) == pytest.approx(2 / 3)
    # All predicted correct on all-correct gold: correct class F1 1, incorrect class absent -> 0.
    assert binary_macro_f1([True, True], [True, True]) == (0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="2 gold labels but 1 scores"):
        ScoredSolution(gold=[1, -1], scores=[0.5])
    with pytest.raises(ValueError, match="no steps labelled"):
        step_f1([ScoredSolution(gold=[0, 0], scores=[0.1, 0.9])])


FIRST_ERROR_CASES = [
    ScoredSolution(gold=[1, 1, -1, -1], scores=[0.9, 0.8, 0.2, 0.1]),  # gold 2, predicted 2: hit
    ScoredSolution(gold=[1, -1, 1], scores=[0.9, 0.7, 0.3]),  # gold 1, predicted 2: miss
    ScoredSolution(gold=[1, 0, 1], scores=[0.8, 0.6, 0.9]),  # neutral is no error: gold -1, predicted -1: hit
    ScoredSolution(gold=[1, 1], scores=[0.6, 0.4]),  # gold -1, predicted 1 (0.4 < 0.5): miss
    ScoredSolution(gold=[1, 1, 1], scores=[0.7, 0.9, 0.8]),  # gold -1, predicted -1: hit
]


def test_first_error_indices():
    assert gold_first_error([1, 0, -1, -1]) == 2
    assert gold_first_error([1, 0, 1]) == -1
    assert predicted_first_error([0.9, 0.4, 0.1]) == 1  # the first score below the threshold
    assert predicted_first_error([0.9, 0.5, 0.1]) == 2  # ProcessBench: "below", so 0.5 is no error at 0.5
    assert predicted_first_error([0.9, 0.6], threshold=0.5) == -1
    # ProcessBench leaves the steps after the first error unlabelled: the first error is still known.
    assert gold_first_error([1, -1, None, None]) == 1
    assert gold_first_error([1, None, 1]) is None  # an unjudged step before any error: unknown


def test_first_error_f1():
    # Erroneous solutions: 1 of 2 located exactly -> 1/2. Correct ones: 2 of 3 -> 2/3.
    # F1 = 2 * (1/2) * (2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7.
    report = first_error_f1(FIRST_ERROR_CASES)
    assert (report.num_erroneous, report.num_correct) == (2, 3)
    assert report.error_accuracy == pytest.approx(1 / 2)
    assert report.correct_accuracy == pytest.approx(2 / 3)
    assert report.f1 == pytest.approx(4 / 7)
    # At 0.25 the second solution predicts -1 (miss) and the fourth -1 (now a hit):
    # errors 1/2, correct 3/3, F1 = 2 * 0.5 * 1 / 1.5 = 2/3.
    assert first_error_f1(FIRST_ERROR_CASES, threshold=0.25).f1 == pytest.approx(2 / 3)


def test_first_error_f1_without_erroneous_solutions():
    report = first_error_f1(FIRST_ERROR_CASES[2:])
    assert report.error_accuracy is None
    assert report.f1 is None
    assert report.correct_accuracy == pytest.approx(2 / 3)


QUESTIONS = [
    # PRM picks 0.95 ("24", wrong): 0. pass@1 2/5. Majority "24" (3 votes, wrong): 0. Oracle 1.
    [
        Candidate("12", True, 0.9),
        Candidate("24", False, 0.95),
        Candidate("12", True, 0.4),
        Candidate("24", False, 0.3),
        Candidate("24", False, 0.1),
    ],
    # PRM picks 0.8 (right): 1. pass@1 2/4. Majority: B and C tie at 2, B seen first (right): 1. Oracle 1.
    [
        Candidate("B", True, 0.8),
        Candidate("C", False, 0.7),
        Candidate("C", False, 0.2),
        Candidate(" B ", True, 0.6),
    ],
    # Nothing right: PRM 0, pass@1 0, majority "7" (the only answer) 0, oracle 0.
    [Candidate(None, False, 0.5), Candidate("7", False, 0.5)],
    # PRM picks 0.2 (wrong): 0. pass@1 1/2. Majority "5" (None is no vote, right): 1. Oracle 1.
    [Candidate(None, False, 0.2), Candidate("5", True, 0.1)],
]


def test_best_of_n():
    # PRM (0+1+0+0)/4 = 0.25; pass@1 (0.4+0.5+0+0.5)/4 = 0.35; majority (0+1+0+1)/4 = 0.5; oracle 3/4.
    report = best_of_n(QUESTIONS)
    assert report == BestOfNReport(
        prm_accuracy=pytest.approx(0.25),
        pass_at_1=pytest.approx(0.35),
        majority_vote=pytest.approx(0.5),
        oracle=pytest.approx(0.75),
        num_questions=4,
    )


def test_best_of_n_ties_and_empty_input():
    # Equal PRM scores: the first candidate is the pick, here the wrong one.
    assert best_of_n([[Candidate("1", False, 0.5), Candidate("2", True, 0.5)]]).prm_accuracy == 0.0
    assert majority_answer([Candidate(None, True, 0.1), Candidate("  ", True, 0.2)]) is None
    assert best_of_n([[], [Candidate("1", True, 0.1)]]).num_questions == 1  # no candidates: left out
    with pytest.raises(ValueError, match="no question has candidates"):
        best_of_n([[]])


def test_processbench_f1_per_subset_then_averaged():
    subset_b = [
        ScoredSolution(gold=[1, -1, None], scores=[0.9, 0.1, 0.8], data_source="b"),  # error at 1, found: hit
        ScoredSolution(gold=[1, 1], scores=[0.9, 0.7], data_source="b"),  # no error, none predicted: hit
        ScoredSolution(gold=[None, 1], scores=[0.9, 0.7], data_source="b"),  # first error unknown: not counted
    ]
    report = processbench_f1([*FIRST_ERROR_CASES, *subset_b])  # FIRST_ERROR_CASES are subset "" (4/7)
    assert report.per_subset[""].f1 == pytest.approx(4 / 7)
    assert report.per_subset["b"].f1 == pytest.approx(1.0)
    assert report.per_subset["b"].num_unjudged == 1
    assert report.average_f1 == pytest.approx((4 / 7 + 1) / 2)  # the mean over subsets, not pooled


def test_auroc_by_hand():
    # BENCH judged steps: correct 0.9, 0.4, 0.7; incorrect 0.3, 0.6, 0.55.
    # Pairs (correct above incorrect): 0.9 beats 3, 0.4 beats 1 (0.3), 0.7 beats 3 -> 7 of 9.
    gold = [True, True, False, True, False, False]
    scores = [0.9, 0.4, 0.3, 0.7, 0.6, 0.55]
    assert auroc_of(gold, scores) == pytest.approx(7 / 9)
    assert auroc_of([True, False], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc_of([True, True], [0.1, 0.2]) is None  # one class only


def test_bootstrap_interval_resamples_solutions():
    perfect = ScoredSolution(gold=[1, -1], scores=[0.9, 0.1])  # macro F1 1
    inverted = ScoredSolution(gold=[1, -1], scores=[0.1, 0.9])  # macro F1 0
    # Resamples of two: {perfect, perfect} 1, mixed 1/2 (each class TP1 FP1 FN1), {inverted x2} 0,
    # with chances 1/4, 1/2, 1/4: the 95% interval runs from 0 to 1.
    assert bootstrap([perfect, inverted], resamples=2000) == (0.0, 1.0)
    assert bootstrap([perfect], resamples=50) == (1.0, 1.0)
    assert bootstrap([perfect, inverted], resamples=200, seed=1) == bootstrap([perfect, inverted], resamples=200, seed=1)
    assert bootstrap([ScoredSolution(gold=[0], scores=[0.3])]) is None


def test_step_benchmark_report_shape_and_numbers():
    report = step_benchmark_report(BENCH, candidates=[0.35, 0.5, 0.65], resamples=100)
    overall = report["overall"]
    assert overall["macro_f1"] == pytest.approx(17 / 35)
    assert (overall["f1_correct"], overall["f1_incorrect"]) == (pytest.approx(4 / 7), pytest.approx(2 / 5))
    assert overall["num_steps"] == 6 and overall["num_solutions"] == 2
    assert overall["auroc"] == pytest.approx(7 / 9)
    low, high = overall["macro_f1_ci95"]
    assert 0 <= low <= high <= 1
    assert report["best_threshold"] == 0.65 and overall["best"]["macro_f1"] == pytest.approx(29 / 35)
    assert set(report["per_source"]) == {"a", "b"}
    a = report["per_source"]["a"]
    assert (a["macro_f1"], a["f1_correct"], a["f1_incorrect"], a["num_steps"]) == (
        pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    # b at the pooled best threshold 0.65: correct TP1 FP0 FN0 -> 1; incorrect TP2 FP0 FN0 -> 1.
    assert report["per_source"]["b"]["best"]["macro_f1"] == pytest.approx(1.0)
