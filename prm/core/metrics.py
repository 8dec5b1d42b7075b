"""PRM evaluation metrics (pure Python): VisualProcessBench macro F1, first-error F1, Best-of-N.

Conventions: gold step labels are +1 (correct), 0 (neutral), -1 (incorrect); a step score is the
PRM's P("+") in [0, 1]; a step is predicted correct when its score > threshold.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_THRESHOLD = 0.5
# Threshold sweep for the "best threshold" figure: 0.00, 0.01, ..., 1.00.
THRESHOLD_GRID: tuple[float, ...] = tuple(i / 100 for i in range(101))


@dataclass(frozen=True)
class ScoredSolution:
    """One solution of a benchmark: gold step labels, PRM step scores, and where it comes from."""

    gold: Sequence[int]
    scores: Sequence[float]
    data_source: str = ""

    def __post_init__(self):
        if len(self.gold) != len(self.scores):
            raise ValueError(f"{len(self.gold)} gold labels but {len(self.scores)} scores")


@dataclass(frozen=True)
class StepF1Report:
    threshold: float
    macro_f1: float
    f1_correct: float
    f1_incorrect: float
    num_steps: int  # judged steps (+1/-1); neutral ones are left out
    per_source: dict[str, float]  # macro F1 per data source


@dataclass(frozen=True)
class FirstErrorReport:
    threshold: float
    error_accuracy: float | None  # solutions with an error whose first error is located exactly
    correct_accuracy: float | None  # fully correct solutions predicted to have no error
    f1: float | None  # harmonic mean of the two accuracies
    num_erroneous: int
    num_correct: int


@dataclass(frozen=True)
class Candidate:
    """One sampled solution to a question, for Best-of-N."""

    final_answer: str | None
    is_correct: bool
    score: float  # PRM response score


@dataclass(frozen=True)
class BestOfNReport:
    prm_accuracy: float  # the candidate with the highest PRM score is right
    pass_at_1: float  # mean correctness of the candidates
    majority_vote: float  # the most frequent final answer is right (self-consistency)
    oracle: float  # some candidate is right (pass@N)
    num_questions: int


def f1_score(*, true_positive: int, false_positive: int, false_negative: int) -> float:
    """F1 of one class; 0 when the class is neither predicted nor present (no precision or recall)."""
    denominator = 2 * true_positive + false_positive + false_negative
    return 2 * true_positive / denominator if denominator else 0.0


def binary_macro_f1(
    gold_correct: Sequence[bool], predicted_correct: Sequence[bool]
) -> tuple[float, float, float]:
    """(macro F1, F1 of the correct class, F1 of the incorrect class)."""
    pairs = Counter(zip(gold_correct, predicted_correct, strict=True))
    f1_correct = f1_score(
        true_positive=pairs[True, True], false_positive=pairs[False, True], false_negative=pairs[True, False]
    )
    f1_incorrect = f1_score(
        true_positive=pairs[False, False],
        false_positive=pairs[True, False],
        false_negative=pairs[False, True],
    )
    return (f1_correct + f1_incorrect) / 2, f1_correct, f1_incorrect


def _judged_steps(solutions: Iterable[ScoredSolution]) -> list[tuple[str, bool, float]]:
    return [
        (solution.data_source, gold == 1, float(score))
        for solution in solutions
        for gold, score in zip(solution.gold, solution.scores, strict=True)
        if gold in (1, -1)
    ]


def step_f1(solutions: Sequence[ScoredSolution], *, threshold: float = DEFAULT_THRESHOLD) -> StepF1Report:
    """VisualProcessBench metric: macro F1 over steps labelled +1/-1, overall and per data source."""
    steps = _judged_steps(solutions)
    if not steps:
        raise ValueError("no steps labelled +1 or -1")
    macro, f1_correct, f1_incorrect = binary_macro_f1(
        [gold for _, gold, _ in steps], [score > threshold for _, _, score in steps]
    )
    by_source: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for source, gold, score in steps:
        by_source[source].append((gold, score))
    per_source = {
        source: binary_macro_f1([gold for gold, _ in rows], [score > threshold for _, score in rows])[0]
        for source, rows in sorted(by_source.items())
    }
    return StepF1Report(
        threshold=threshold,
        macro_f1=macro,
        f1_correct=f1_correct,
        f1_incorrect=f1_incorrect,
        num_steps=len(steps),
        per_source=per_source,
    )


def best_threshold_step_f1(
    solutions: Sequence[ScoredSolution], *, candidates: Sequence[float] = THRESHOLD_GRID
) -> StepF1Report:
    """step_f1 at the candidate threshold with the highest overall macro F1 (the lowest one on ties)."""
    if not candidates:
        raise ValueError("no candidate thresholds")
    best: StepF1Report | None = None
    for threshold in sorted(candidates):
        report = step_f1(solutions, threshold=threshold)
        if best is None or report.macro_f1 > best.macro_f1:
            best = report
    return best


def gold_first_error(gold: Sequence[int]) -> int:
    """Index of the first step labelled -1, or -1 when there is none (neutral steps are no error)."""
    return next((index for index, label in enumerate(gold) if label == -1), -1)


def predicted_first_error(scores: Sequence[float], *, threshold: float = DEFAULT_THRESHOLD) -> int:
    """Index of the first step with score <= threshold, or -1 when every step is predicted correct."""
    return next((index for index, score in enumerate(scores) if score <= threshold), -1)


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def first_error_f1(
    solutions: Sequence[ScoredSolution], *, threshold: float = DEFAULT_THRESHOLD
) -> FirstErrorReport:
    """ProcessBench metric: exact first-error accuracy on erroneous solutions, "no error" accuracy on
    correct ones, and their harmonic mean. An accuracy is None when its group is empty."""
    hits: dict[bool, list[bool]] = {True: [], False: []}  # keyed by "has an error"
    for solution in solutions:
        gold = gold_first_error(solution.gold)
        hits[gold != -1].append(predicted_first_error(solution.scores, threshold=threshold) == gold)
    error_accuracy = sum(hits[True]) / len(hits[True]) if hits[True] else None
    correct_accuracy = sum(hits[False]) / len(hits[False]) if hits[False] else None
    f1 = (
        harmonic_mean(error_accuracy, correct_accuracy)
        if error_accuracy is not None and correct_accuracy is not None
        else None
    )
    return FirstErrorReport(
        threshold=threshold,
        error_accuracy=error_accuracy,
        correct_accuracy=correct_accuracy,
        f1=f1,
        num_erroneous=len(hits[True]),
        num_correct=len(hits[False]),
    )


def majority_answer(candidates: Sequence[Candidate]) -> Candidate | None:
    """A candidate carrying the most frequent final answer (ties: the answer seen first); None if no
    candidate has an answer."""
    answered = [c for c in candidates if c.final_answer is not None and c.final_answer.strip()]
    if not answered:
        return None
    counts = Counter(c.final_answer.strip() for c in answered)
    top = max(counts.values())
    return next(c for c in answered if counts[c.final_answer.strip()] == top)


def best_of_n(questions: Sequence[Sequence[Candidate]]) -> BestOfNReport:
    """Best-of-N over questions, each a list of candidates (the PRM pick: highest score, first on ties)."""
    questions = [candidates for candidates in questions if candidates]
    if not questions:
        raise ValueError("no question has candidates")
    prm = pass1 = majority = oracle = 0.0
    for candidates in questions:
        prm += max(candidates, key=lambda c: c.score).is_correct  # max keeps the first of equal scores
        pass1 += sum(c.is_correct for c in candidates) / len(candidates)
        voted = majority_answer(candidates)
        majority += voted is not None and voted.is_correct
        oracle += any(c.is_correct for c in candidates)
    count = len(questions)
    return BestOfNReport(
        prm_accuracy=prm / count,
        pass_at_1=pass1 / count,
        majority_vote=majority / count,
        oracle=oracle / count,
        num_questions=count,
    )


# Response score from step scores (pure: the web process imports it without torch).
Aggregation = Literal["mean", "min", "last", "product"]
AGGREGATIONS: tuple[str, ...] = ("mean", "min", "last", "product")


def aggregate_step_scores(step_scores: Sequence[float], *, method: Aggregation = "mean") -> float:
    """Response score from step scores: mean (VisualPRM's default), min, last or product."""
    if not step_scores:
        raise ValueError("no step scores to aggregate")
    if method == "mean":
        return sum(step_scores) / len(step_scores)
    if method == "min":
        return min(step_scores)
    if method == "last":
        return step_scores[-1]
    if method == "product":
        return math.prod(step_scores)
    raise ValueError(f"unknown aggregation {method!r}; choose from {AGGREGATIONS}")
