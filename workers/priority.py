"""Annotation priority: label first where the machines disagree, are unsure, or are convincingly wrong.

Each step carries at most one Monte Carlo label (mc = right / sampled completions, or an inferred
sign without counts) and one PRM label (p = P(+) of the live PRM). Per step i:

- MC value label  v_i = 1 if mc_i > threshold (default 0, as the export's value labels) else 0.
- MC uncertainty  u_mc_i = std of the Beta(c + 1, n - c + 1) posterior of mc_i, divided by the
  std of the uniform prior (1 / sqrt(12)), so in [0, 1]. It is small near the 0/1 edges and with
  many samples, large in the middle and with few samples (n=16, c=16: 0.18; c=8: 0.40; n=2, c=1:
  0.77). Only exhaustive (or imported) counts are read so: an adaptive or first-error label's
  counts come from a stopping rule (1/1 after one lucky draw), so it counts as a value label
  without counts, 0.5, like an inferred label; a missing MC label counts 0.5 (unknown).
- PRM uncertainty u_prm_i = 1 - |2 p_i - 1|: 1 at p = 0.5, 0 at the edges; missing: 0.5.
- Disagreement    d_i = |v_i - p_i| when both exist (a confident PRM contradicting the MC label
  gives ~1, agreement ~0); 0.5 when either is missing.
- Step score      s_i = 0.5 d_i + 0.25 u_mc_i + 0.25 u_prm_i, in [0, 1]. A step without machine
  labels scores 0.5: below a confirmed disagreement, above labels that agree with confidence.

Per solution, with r = mean_i p_i (the PRM response score, VisualPRM's default aggregation):

- steps part      S = 0.7 max_i s_i + 0.3 mean_i s_i: one doubtful step is reason enough to look,
  the mean breaks ties between solutions with equally doubtful worst steps;
- convincing wrong answer (as PRM800K chose what to label) C = max(0, 2 r - 1) when the final
  answer is known to be wrong (Solution.is_correct is False), else 0: 1 when the PRM is sure
  of a wrong solution, 0 once r <= 0.5;
- judge disagreement J = 2 when, on some step, an LLM judge's +1/-1 verdict contradicts the MC value
  label or the PRM's (p > 0.5), else 0 (a judge's neutral verdict contradicts nothing);
- priority        P = S + C + J, in [0, 4]; a solution without steps gets 0. Higher is labelled
  sooner (annotation.services.queue orders by -priority): as S + C <= 2, every solution where the
  judge and MC or the PRM disagree comes before every one where they do not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from annotation.models import AutoLabel, Solution, Step

UNKNOWN = 0.5
UNIFORM_STD = 1 / math.sqrt(12)
DISAGREEMENT_WEIGHT, MC_UNCERTAINTY_WEIGHT, PRM_UNCERTAINTY_WEIGHT = 0.5, 0.25, 0.25
WORST_STEP_WEIGHT, MEAN_STEP_WEIGHT = 0.7, 0.3
JUDGE_DISAGREEMENT = 2.0
PRM_LABEL_THRESHOLD = 0.5


@dataclass(frozen=True)
class StepEvidence:
    """The machine labels of one step (any may be None)."""

    mc_score: float | None = None
    mc_correct: int | None = None
    mc_total: int | None = None
    mc_value: int | None = None  # an inferred -1/+1 without counts (binary search)
    prm_score: float | None = None
    judge_value: int | None = None  # an LLM judge's verdict, +1 / 0 / -1


def mc_value_label(step: StepEvidence, *, threshold: float = 0.0) -> int | None:
    """1 (correct) / 0 (incorrect) by the MC value rule, or None without an MC label."""
    if step.mc_score is not None:
        return int(step.mc_score > threshold)
    if step.mc_value is not None:
        return int(step.mc_value > 0)
    return None


def mc_uncertainty(step: StepEvidence) -> float:
    if step.mc_total:
        a = (step.mc_correct or 0) + 1
        b = step.mc_total - (step.mc_correct or 0) + 1
        return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))) / UNIFORM_STD
    if step.mc_score is not None:
        # A score without counts (an imported estimate): only its distance from the edges is known.
        return 1 - abs(2 * step.mc_score - 1)
    return UNKNOWN


def prm_uncertainty(step: StepEvidence) -> float:
    return UNKNOWN if step.prm_score is None else 1 - abs(2 * step.prm_score - 1)


def judge_disagrees(step: StepEvidence, *, threshold: float = 0.0) -> bool:
    """The judge's +1/-1 verdict contradicts the MC value label or the PRM's label (P(+) > 0.5)."""
    if not step.judge_value:
        return False
    judge_correct = step.judge_value > 0
    value = mc_value_label(step, threshold=threshold)
    if value is not None and bool(value) != judge_correct:
        return True
    return step.prm_score is not None and (step.prm_score > PRM_LABEL_THRESHOLD) != judge_correct


def step_score(step: StepEvidence, *, threshold: float = 0.0) -> float:
    value = mc_value_label(step, threshold=threshold)
    disagreement = UNKNOWN if value is None or step.prm_score is None else abs(value - step.prm_score)
    return (
        DISAGREEMENT_WEIGHT * disagreement
        + MC_UNCERTAINTY_WEIGHT * mc_uncertainty(step)
        + PRM_UNCERTAINTY_WEIGHT * prm_uncertainty(step)
    )


def solution_priority(steps: Sequence[StepEvidence], *, is_correct: bool | None, threshold: float = 0.0) -> float:
    """The module docstring's P for one solution's steps and its outcome correctness."""
    if not steps:
        return 0.0
    scores = [step_score(step, threshold=threshold) for step in steps]
    steps_part = WORST_STEP_WEIGHT * max(scores) + MEAN_STEP_WEIGHT * sum(scores) / len(scores)
    prm_scores = [step.prm_score for step in steps if step.prm_score is not None]
    convincing_wrong = 0.0
    if is_correct is False and prm_scores:
        convincing_wrong = max(0.0, 2 * sum(prm_scores) / len(prm_scores) - 1)
    judge = JUDGE_DISAGREEMENT if any(judge_disagrees(step, threshold=threshold) for step in steps) else 0.0
    return steps_part + convincing_wrong + judge


def _live_prm_sources(project_ids: Iterable[int]) -> dict[int, str]:
    from prm.models import PRMVersion

    return dict(
        PRMVersion.objects.filter(project_id__in=set(project_ids), status=PRMVersion.Status.LIVE).values_list(
            "project_id", "name"
        )
    )


def solution_priority_update(*, solution_ids: Iterable[int], threshold: float = 0.0) -> dict[int, float]:
    """Recompute and store the priority of these solutions; returns {solution id: priority}.

    The PRM label used is the project's live version's when a step has one, else the step's newest
    PRM label; the MC label is an exhaustive (or imported) estimate with most samples, else a value
    label (adaptive, first-error) with its counts ignored.
    """
    solutions = list(
        Solution.objects.filter(pk__in=list(solution_ids)).select_related("item").only("pk", "is_correct", "item__project_id")
    )
    if not solutions:
        return {}
    live = _live_prm_sources(solution.item.project_id for solution in solutions)
    project_of = {solution.pk: solution.item.project_id for solution in solutions}
    labels = (
        AutoLabel.objects.filter(step__solution__in=solutions)
        .filter(
            Q(kind=AutoLabel.Kind.PRM, score__isnull=False)
            | Q(kind=AutoLabel.Kind.MC)
            | Q(kind=AutoLabel.Kind.JUDGE, value__isnull=False)
        )
        .values_list(
            "step_id", "step__solution_id", "kind", "source", "score", "value", "num_correct", "num_total", "estimate"
        )
        .order_by("created_at", "pk")
    )
    prm: dict[int, tuple[bool, float]] = {}  # step -> (from the live version?, score)
    mc: dict[int, tuple] = {}
    judge: dict[int, int] = {}  # step -> the newest judge verdict
    for step_id, solution_id, kind, source, score, value, correct, total, estimate in labels:
        if kind == AutoLabel.Kind.JUDGE:
            judge[step_id] = value
            continue
        if kind == AutoLabel.Kind.PRM:
            is_live = live.get(project_of[solution_id]) == source
            if is_live or not prm.get(step_id, (False, 0.0))[0]:
                prm[step_id] = (is_live, score)
            continue
        if estimate in AutoLabel.STOPPED_ESTIMATES:
            correct = total = None  # a stopping rule's counts: the value label alone is evidence
        if step_id not in mc or (total or 0) >= (mc[step_id][2] or 0):
            mc[step_id] = (score, correct, total, value)
    steps_of: dict[int, list[int]] = {solution.pk: [] for solution in solutions}
    for step_id, solution_id in Step.objects.filter(solution__in=solutions).order_by("index").values_list("pk", "solution_id"):
        steps_of[solution_id].append(step_id)
    priorities: dict[int, float] = {}
    for solution in solutions:
        evidence = []
        for step_id in steps_of[solution.pk]:
            score, correct, total, value = mc.get(step_id, (None, None, None, None))
            evidence.append(
                StepEvidence(
                    mc_score=score,
                    mc_correct=correct,
                    mc_total=total,
                    mc_value=value,
                    prm_score=prm[step_id][1] if step_id in prm else None,
                    judge_value=judge.get(step_id),
                )
            )
        solution.priority = solution_priority(evidence, is_correct=solution.is_correct, threshold=threshold)
        priorities[solution.pk] = solution.priority
    with transaction.atomic():
        Solution.objects.bulk_update(solutions, ["priority"], batch_size=500)
    return priorities
