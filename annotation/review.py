"""Selectors for review: which solutions need a reviewer, and every label of every step side by side."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from annotation.models import (
    Assignment,
    AutoLabel,
    GoldLabel,
    HumanLabel,
    LabelChange,
    Project,
    Solution,
    Step,
)

MC_THRESHOLD = 0.0
PRM_THRESHOLD = 0.5


@dataclass
class ReviewCandidate:
    solution_id: int
    item_external_id: str
    policy_model: str
    annotators: int
    reasons: list[str] = field(default_factory=list)
    adjudicated: bool = False


def _machine_value(kind: str, score: float | None) -> int | None:
    if score is None:
        return None
    threshold = MC_THRESHOLD if kind == AutoLabel.Kind.MC else PRM_THRESHOLD
    return 1 if score > threshold else -1


def review_queue(*, project: Project, include_adjudicated: bool = False) -> list[ReviewCandidate]:
    """Solutions with submitted human labels whose annotators disagree with each other or with the machines."""
    solution_ids = list(
        Assignment.objects.filter(solution__item__project=project, status=Assignment.Status.SUBMITTED)
        .values_list("solution_id", flat=True)
        .distinct()
    )
    if not solution_ids:
        return []
    humans: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for solution_id, step_id, value in HumanLabel.objects.filter(step__solution_id__in=solution_ids).values_list(
        "step__solution_id", "step_id", "value"
    ):
        humans[solution_id][step_id].append(value)
    machine: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for step_id, kind, score, verdict in AutoLabel.objects.filter(
        step__solution_id__in=solution_ids, kind__in=[AutoLabel.Kind.MC, AutoLabel.Kind.PRM, AutoLabel.Kind.JUDGE]
    ).values_list("step_id", "kind", "score", "value"):
        # A judge's neutral verdict is compared with nothing, as a human's neutral label.
        value = (verdict or None) if kind == AutoLabel.Kind.JUDGE else _machine_value(kind, score)
        if value is not None:
            machine[step_id].append((kind, value))
    adjudicated = set(
        GoldLabel.objects.filter(step__solution_id__in=solution_ids, source=GoldLabel.Source.ADJUDICATED)
        .values_list("step__solution_id", flat=True)
        .distinct()
    )
    info = {
        row["id"]: row
        for row in Solution.objects.filter(id__in=solution_ids).values("id", "item__external_id", "policy_model")
    }
    candidates = []
    for solution_id in sorted(solution_ids):
        reasons: set[str] = set()
        annotators = 0
        for step_id, values in humans[solution_id].items():
            annotators = max(annotators, len(values))
            if len(set(values)) > 1:
                reasons.add("annotators disagree")
            # Neutral (0) is not compared with the machines: they have no neutral.
            decided = [v for v in values if v != 0]
            for kind, value in machine.get(step_id, []):
                if decided and any(v != value for v in decided):
                    reasons.add(f"humans disagree with {kind.upper()}")
        if not reasons:
            continue
        if solution_id in adjudicated and not include_adjudicated:
            continue
        candidates.append(
            ReviewCandidate(
                solution_id=solution_id,
                item_external_id=info[solution_id]["item__external_id"],
                policy_model=info[solution_id]["policy_model"],
                annotators=annotators,
                reasons=sorted(reasons),
                adjudicated=solution_id in adjudicated,
            )
        )
    return candidates


def review_rows(*, solution: Solution) -> tuple[list[str], list[dict]]:
    """(annotator names, one row per step with each annotator's label, machine scores, the judge's
    verdict and reason, gold, history)."""
    steps = list(Step.objects.filter(solution=solution).order_by("index"))
    labels = list(
        HumanLabel.objects.filter(step__in=steps).select_related("annotator").order_by("annotator__username")
    )
    names = sorted({label.annotator.get_username() for label in labels})
    by_step: dict[int, dict[str, int]] = defaultdict(dict)
    for label in labels:
        by_step[label.step_id][label.annotator.get_username()] = label.value
    autos: dict[int, dict] = defaultdict(dict)
    for step_id, kind, source, score, right, total, value, reason in (
        AutoLabel.objects.filter(step__in=steps)
        .order_by("id")
        .values_list("step_id", "kind", "source", "score", "num_correct", "num_total", "value", "reason")
    ):
        autos[step_id][kind] = {
            "score": score, "right": right, "total": total, "value": value, "reason": reason, "source": source
        }
    gold = {g.step_id: g for g in GoldLabel.objects.filter(step__in=steps)}
    history: dict[int, list[LabelChange]] = defaultdict(list)
    for change in LabelChange.objects.filter(step__in=steps).select_related("changed_by", "annotator"):
        history[change.step_id].append(change)
    rows = []
    for step in steps:
        rows.append(
            {
                "step": step,
                "labels": [by_step[step.id].get(name) for name in names],
                "mc": autos[step.id].get("mc"),
                "prm": autos[step.id].get("prm"),
                "judge": autos[step.id].get("judge"),
                "gold": gold.get(step.id),
                "history": history.get(step.id, []),
            }
        )
    return names, rows
