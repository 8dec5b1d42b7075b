"""The step an annotator is about to label, with everything the save needs, in one query.

A label save is the request annotators make most (one per click), so the checks the pages and
the API need — the project exists and the user belongs to it, the assignment is theirs and in
this project, the step is in the assignment's solution — and the hints to record with the
label are read in a single round trip instead of one query per check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from django.db import connection
from django.http import Http404

from annotation.access import OVERSEER_ROLES
from annotation.labelling_reads import hints_entry
from annotation.models import Assignment, AutoLabel, Membership, Project, Solution, Step


@dataclass(frozen=True)
class LabelTarget:
    project_id: int
    assignment_id: int
    assignment_status: str
    solution_id: int
    step_id: int
    step_index: int
    step_text: str
    sees_hints: bool
    hints: dict = field(default_factory=dict)  # the step's machine hints, empty unless sees_hints

    @property
    def is_open(self) -> bool:
        return self.assignment_status == Assignment.Status.ASSIGNED


@cache
def _sql() -> str:
    step, assignment, solution = Step._meta.db_table, Assignment._meta.db_table, Solution._meta.db_table
    project, membership, auto = Project._meta.db_table, Membership._meta.db_table, AutoLabel._meta.db_table
    # One row per machine label of the step (or one row with NULLs when it has none). The project
    # comes from the solution's own copy of it, with no join through the item.
    return f"""
        SELECT a.status, so.id, st."index", st.text, p.show_machine_labels, m.role,
               al.kind, al.source, al.score, al.num_correct, al.num_total
        FROM {step} st
        JOIN {assignment} a ON a.solution_id = st.solution_id
        JOIN {solution} so ON so.id = st.solution_id
        JOIN {project} p ON p.id = so.project_id
        LEFT JOIN {membership} m ON m.project_id = p.id AND m.user_id = %s
        LEFT JOIN {auto} al ON al.step_id = st.id AND al.kind IN (%s, %s)
        WHERE st.id = %s AND a.id = %s AND a.annotator_id = %s AND p.id = %s
        ORDER BY al.id
    """


def label_target(*, user, project_id: int, assignment_id: int, step_id: int) -> LabelTarget:
    """The step of `user`'s own assignment; Http404 for outsiders and for anything not theirs."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such project.")
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(),
            [user.pk, AutoLabel.Kind.MC, AutoLabel.Kind.PRM, step_id, assignment_id, user.pk, project_id],
        )
        rows = cursor.fetchall()
    if not rows:
        raise Http404("No such step in your assignments.")
    status, solution_id, index, text, show_machine_labels, role = rows[0][:6]
    if role is None and not user.is_staff:
        raise Http404("No such project.")
    sees_hints = bool(show_machine_labels) or user.is_staff or role in OVERSEER_ROLES
    hints: dict = {}
    if sees_hints:
        for *_, kind, source, score, right, total in rows:
            if kind is not None:
                hints_entry(hints, kind=kind, source=source, score=score, right=right, total=total)
    return LabelTarget(
        project_id=project_id,
        assignment_id=assignment_id,
        assignment_status=status,
        solution_id=solution_id,
        step_id=step_id,
        step_index=index,
        step_text=text,
        sees_hints=sees_hints,
        hints=hints,
    )
