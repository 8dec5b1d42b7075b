"""What help a member sees while labelling: machine hints and the reference answer.

Shared by the labelling pages and the REST API so both apply the same rule: annotators see
machine hints only where the project allows it (they anchor judgements); reviewers, admins and
staff always do.
"""

from __future__ import annotations

from annotation.models import AutoLabel, Project, Role
from annotation.permissions import project_role

OVERSEER_ROLES = (Role.REVIEWER, Role.ADMIN)  # see machine hints and reference answers always


def _oversees(user, project: Project) -> bool:
    return bool(user.is_staff) or project_role(user, project) in OVERSEER_ROLES


def sees_machine_hints(user, project: Project) -> bool:
    return project.show_machine_labels or _oversees(user, project)


def sees_reference_answer(user, project: Project) -> bool:
    return project.show_reference_answer or _oversees(user, project)


def hints_entry(
    entry: dict, *, kind: str, source: str, score: float | None, right: int | None, total: int | None
) -> None:
    """Add one machine label to a step's hints: the MC estimate with its counts, or the PRM score."""
    if kind == AutoLabel.Kind.MC:
        entry["mc"] = {"score": score, "right": right, "total": total, "source": source}
    elif kind == AutoLabel.Kind.PRM:
        entry["prm"] = {"score": score, "source": source}


def step_hints(step_ids: list[int]) -> dict[int, dict]:
    """Machine hints per step: the MC estimate with its counts and the PRM score (the latest of each kind)."""
    hints: dict[int, dict] = {}
    for step_id, kind, source, score, right, total in (
        AutoLabel.objects.filter(step_id__in=step_ids, kind__in=[AutoLabel.Kind.MC, AutoLabel.Kind.PRM])
        .order_by("id")
        .values_list("step_id", "kind", "source", "score", "num_correct", "num_total")
    ):
        hints_entry(hints.setdefault(step_id, {}), kind=kind, source=source, score=score, right=right, total=total)
    return hints
