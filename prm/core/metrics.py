"""PRM evaluation metrics (pure Python): VisualProcessBench macro F1, first-error F1, Best-of-N.

Conventions: gold step labels are +1 (correct), 0 (neutral), -1 (incorrect) or None (not judged,
e.g. ProcessBench's steps after the first error); a step score is the PRM's P("+") in [0, 1]; a
step is predicted correct when its score > threshold, and a solution's predicted first error is
its first step scored below the threshold.
"""

from __future__ import annotations

import math
import random
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

    gold: Sequence[int | None]
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
    num_unjudged: int = 0  # solutions whose first error is unknown (an unjudged step before any error)


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


def gold_first_error(gold: Sequence[int | None]) -> int | None:
    """Index of the first step labelled -1; -1 when the solution is judged correct throughout
    (every step labelled, none -1: neutral is no error); None when it cannot be told (an unjudged
    step before any error)."""
    for index, label in enumerate(gold):
        if label == -1:
            return index
        if label is None:
            return None
    return -1


def predicted_first_error(scores: Sequence[float], *, threshold: float = DEFAULT_THRESHOLD) -> int:
    """Index of the first step scored below `threshold`, or -1 when there is none (ProcessBench)."""
    return next((index for index, score in enumerate(scores) if score < threshold), -1)


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def first_error_f1(
    solutions: Sequence[ScoredSolution], *, threshold: float = DEFAULT_THRESHOLD
) -> FirstErrorReport:
    """ProcessBench metric on one subset: exact first-error accuracy on erroneous solutions, "no
    error" accuracy on correct ones, and their harmonic mean. Every solution whose first error is
    known counts (steps after it may be unlabelled); an accuracy is None when its group is empty."""
    hits: dict[bool, list[bool]] = {True: [], False: []}  # keyed by "has an error"
    unjudged = 0
    for solution in solutions:
        gold = gold_first_error(solution.gold)
        if gold is None:
            unjudged += 1
            continue
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
        num_unjudged=unjudged,
    )


@dataclass(frozen=True)
class ProcessBenchReport:
    threshold: float
    per_subset: dict[str, FirstErrorReport]  # by data source
    average_f1: float | None  # mean of the subsets' F1 (subsets without an F1 left out)


def processbench_f1(
    solutions: Sequence[ScoredSolution], *, threshold: float = DEFAULT_THRESHOLD
) -> ProcessBenchReport:
    """First-error F1 per subset (data source), then their average, as ProcessBench reports it."""
    by_subset: dict[str, list[ScoredSolution]] = defaultdict(list)
    for solution in solutions:
        by_subset[solution.data_source].append(solution)
    per_subset = {name: first_error_f1(rows, threshold=threshold) for name, rows in sorted(by_subset.items())}
    scored = [report.f1 for report in per_subset.values() if report.f1 is not None]
    return ProcessBenchReport(
        threshold=threshold, per_subset=per_subset, average_f1=sum(scored) / len(scored) if scored else None
    )


# --- VisualProcessBench report: class F1, AUROC, bootstrap interval --------------------------------


def auroc(gold_correct: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of `scores` for the correct class (ties count one half); None
    when one class is absent. Rank form of the Mann-Whitney U statistic."""
    positives = sum(gold_correct)
    negatives = len(gold_correct) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, start = 0.0, 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        average_rank = (start + end) / 2 + 1  # tied scores share the mean of their 1-based ranks
        rank_sum += average_rank * sum(gold_correct[order[i]] for i in range(start, end + 1))
        start = end + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _confusion(solution: ScoredSolution, threshold: float) -> tuple[int, int, int, int]:
    """(correct predicted correct, correct predicted incorrect, incorrect predicted correct,
    incorrect predicted incorrect) over the judged steps of one solution."""
    tt = tf = ft = ff = 0
    for gold, score in zip(solution.gold, solution.scores, strict=True):
        if gold not in (1, -1):
            continue
        predicted = score > threshold
        if gold == 1:
            tt, tf = tt + predicted, tf + (not predicted)
        else:
            ft, ff = ft + predicted, ff + (not predicted)
    return tt, tf, ft, ff


def _macro_from_counts(tt: int, tf: int, ft: int, ff: int) -> float:
    f1_correct = f1_score(true_positive=tt, false_positive=ft, false_negative=tf)
    f1_incorrect = f1_score(true_positive=ff, false_positive=tf, false_negative=ft)
    return (f1_correct + f1_incorrect) / 2


def bootstrap_macro_f1_interval(
    solutions: Sequence[ScoredSolution], *, threshold: float = DEFAULT_THRESHOLD, resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of step macro F1, resampling whole SOLUTIONS (the steps of one
    solution are not independent); None without judged steps."""
    counts = [c for c in (_confusion(s, threshold) for s in solutions) if any(c)]
    if not counts or resamples < 1:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        tt = tf = ft = ff = 0
        for a, b, c, d in rng.choices(counts, k=len(counts)):
            tt, tf, ft, ff = tt + a, tf + b, ft + c, ff + d
        values.append(_macro_from_counts(tt, tf, ft, ff))
    values.sort()
    tail = (1 - confidence) / 2
    low = values[max(0, math.floor(tail * resamples))]
    high = values[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return low, high


def _class_f1(solutions: Sequence[ScoredSolution], threshold: float) -> dict[str, float | int]:
    report = step_f1(solutions, threshold=threshold)
    return {"threshold": threshold, "macro_f1": report.macro_f1, "f1_correct": report.f1_correct,
            "f1_incorrect": report.f1_incorrect, "num_steps": report.num_steps}


def step_benchmark_report(
    solutions: Sequence[ScoredSolution], *, threshold: float = DEFAULT_THRESHOLD,
    candidates: Sequence[float] = THRESHOLD_GRID, resamples: int = 1000, seed: int = 0,
) -> dict:
    """VisualProcessBench figures, pooled ("overall") and per data source ("per_source"): macro F1
    and each class's F1 at `threshold`, the same at the best pooled threshold ("best"), AUROC and
    a bootstrap 95% interval of macro F1. Steps with gold 0 or None are left out."""

    def block(rows: Sequence[ScoredSolution], best_threshold: float) -> dict:
        steps = _judged_steps(rows)
        result = _class_f1(rows, threshold)
        result["auroc"] = auroc([gold for _, gold, _ in steps], [score for _, _, score in steps])
        result["macro_f1_ci95"] = bootstrap_macro_f1_interval(rows, threshold=threshold, resamples=resamples, seed=seed)
        result["num_solutions"] = sum(any(g in (1, -1) for g in s.gold) for s in rows)
        result["best"] = _class_f1(rows, best_threshold)
        return result

    best = best_threshold_step_f1(solutions, candidates=candidates).threshold
    by_source: dict[str, list[ScoredSolution]] = defaultdict(list)
    for solution in solutions:
        if any(g in (1, -1) for g in solution.gold):
            by_source[solution.data_source].append(solution)
    return {
        "threshold": threshold,
        "best_threshold": best,
        "overall": block(solutions, best),
        "per_source": {source: block(rows, best) for source, rows in sorted(by_source.items())},
    }


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
