"""Quality control: each annotator's accuracy on hidden gold items."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from annotation.models import Assignment, GoldLabel, HumanLabel, Project


@dataclass(frozen=True)
class GoldAccuracy:
    annotator: str
    items: int
    steps: int
    matches: int

    @property
    def accuracy(self) -> float | None:
        return self.matches / self.steps if self.steps else None


def gold_accuracy(*, project: Project) -> list[GoldAccuracy]:
    """Per annotator: steps of submitted gold-check items labelled, and how many match the gold label."""
    checks = Assignment.objects.filter(
        solution__item__project=project, is_gold_check=True, status=Assignment.Status.SUBMITTED
    ).values_list("annotator_id", "annotator__username", "solution_id")
    solutions_by_annotator: dict[int, set[int]] = defaultdict(set)
    names: dict[int, str] = {}
    for annotator_id, username, solution_id in checks:
        solutions_by_annotator[annotator_id].add(solution_id)
        names[annotator_id] = username
    all_solutions = set().union(*solutions_by_annotator.values()) if solutions_by_annotator else set()
    gold = dict(
        GoldLabel.objects.filter(step__solution_id__in=all_solutions, source=GoldLabel.Source.ADJUDICATED).values_list(
            "step_id", "value"
        )
    )
    results = []
    for annotator_id, solution_ids in sorted(solutions_by_annotator.items(), key=lambda kv: names[kv[0]]):
        steps = matches = 0
        for step_id, value in HumanLabel.objects.filter(
            annotator_id=annotator_id, step__solution_id__in=solution_ids
        ).values_list("step_id", "value"):
            if step_id in gold:
                steps += 1
                matches += int(value == gold[step_id])
        results.append(GoldAccuracy(annotator=names[annotator_id], items=len(solution_ids), steps=steps, matches=matches))
    return results
