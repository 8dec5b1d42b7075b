"""A member labels, or clears the label of, one step of their own open assignment.

The save is the click annotators make all day: one statement (statements.label_save_statement)
checks access, reads the hints shown, writes the label and its history. The clear is rarer and
goes through the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.http import Http404

from annotation.access import assignment_for_member, sees_machine_hints
from annotation.models import Assignment, Step
from annotation.services.labels import (
    LabelRejected,
    LabelWrite,
    check_error_category,
    check_label_value,
    step_label_clear,
)
from annotation.services.statements import label_save_statement, labelling_screen_statement


class AssignmentClosed(Exception):
    """The assignment is submitted, skipped or flagged: its labels no longer change."""

    def __init__(self, status: str):
        super().__init__(f"this item is already {Assignment.Status(status).label.lower()}")
        self.status = status


@dataclass(frozen=True)
class LabelTarget:
    """The step as the save read it: what the page redraws its row from."""

    project_id: int
    assignment_id: int
    solution_id: int
    step_id: int
    step_index: int
    step_text: str
    sees_hints: bool
    hints: dict = field(default_factory=dict)  # the step's machine hints, empty unless sees_hints


@dataclass(frozen=True)
class LabelSave:
    target: LabelTarget
    write: LabelWrite
    missing_step_ids: list[int]  # what the user must still label before submitting


def _refuse_unless_allowed(user) -> None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such project.")


def assignment_step_label_set(
    *,
    user,
    project_id: int,
    assignment_id: int,
    step_id: int,
    value: int,
    error_category: str | None = None,
    error_note: str | None = None,
) -> LabelSave:
    """Set `user`'s label (with an error category and note, for incorrect steps) of a step of their own open assignment.

    Http404 for outsiders and for anything that is not theirs; AssignmentClosed when the
    assignment is finished; LabelRejected for a value other than -1, 0, 1 (after the access
    checks, so outsiders learn nothing from a bad value), or for an error category the project does
    not offer, one on a label other than -1, a note without "other". Other annotators' labels are never
    touched, and each change is kept in the history with the hints shown.
    """
    _refuse_unless_allowed(user)
    category, note = "", ""
    try:
        checked, rejected = check_label_value(value), None
        category, note = check_error_category(value=checked, category=error_category, note=error_note)
    except LabelRejected as exc:
        checked, rejected, category, note = None, exc, "", ""
    for _attempt in range(3):
        row = label_save_statement(
            user=user, project_id=project_id, assignment_id=assignment_id, step_id=step_id, value=checked,
            category=category, note=note,
        )
        if row is None:
            raise Http404("No such step in your assignments.")
        if row.status != Assignment.Status.ASSIGNED:
            raise AssignmentClosed(row.status)
        if rejected is not None:
            raise rejected
        if not row.category_ok:
            raise LabelRejected(_category_refusal(project_id, category), field="error_category")
        if row.written:
            target = LabelTarget(
                project_id=project_id,
                assignment_id=assignment_id,
                solution_id=row.solution_id,
                step_id=step_id,
                step_index=row.step_index,
                step_text=row.step_text,
                sees_hints=row.sees_hints,
                hints=row.hints,
            )
            write = LabelWrite(
                value=checked, previous=row.previous, changed=row.changed, error_category=category, error_note=note
            )
            return LabelSave(target=target, write=write, missing_step_ids=row.missing_step_ids)
        # Another request inserted the same (step, annotator) row between our look and our
        # insert (ON CONFLICT DO NOTHING): run again, and it is an update.
    raise RuntimeError(f"could not write the label of step {step_id}: the row kept changing under the write")


def _category_refusal(project_id: int, category: str) -> str:
    from annotation.models import Project

    project = Project.objects.filter(pk=project_id).only("error_categories_enabled", "error_categories").first()
    offered = project.offered_error_categories if project is not None else []
    if not offered:
        return "this project does not use error categories"
    return f"error category {category!r} is not one of this project's: {', '.join(offered)}"


@transaction.atomic
def assignment_step_label_clear(*, user, project_id: int, assignment_id: int, step_id: int) -> LabelSave:
    """Clear `user`'s label of a step of their own open assignment (kept in the history).

    The same refusals as `assignment_step_label_set`; clearing a step with no label changes nothing.
    """
    _refuse_unless_allowed(user)
    assignment = assignment_for_member(user, project_id, assignment_id)
    step = Step.objects.filter(pk=step_id, solution_id=assignment.solution_id).only("index", "text").first()
    if step is None:
        raise Http404("No such step in your assignments.")
    # The label version goes up only while the assignment is open, and the row stays locked until
    # the delete commits: a submit in between runs again and sees the step unlabelled.
    bumped = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.ASSIGNED).update(
        label_version=F("label_version") + 1
    )
    if not bumped:
        raise AssignmentClosed(Assignment.objects.values_list("status", flat=True).get(pk=assignment.pk))
    write = step_label_clear(step_id=step.id, annotator_id=user.pk)
    project = assignment.solution.project
    sees_hints = sees_machine_hints(user, project)
    # The hints and the steps still required, as the labelling screen reads them (one statement).
    screen = labelling_screen_statement(
        solution_id=assignment.solution_id, item_id=None, annotator_id=user.pk, label_mode=project.label_mode,
        with_hints=sees_hints,
    )
    shown = next(row["hints"] for row in screen.steps if row["id"] == step.id)
    target = LabelTarget(
        project_id=project_id,
        assignment_id=assignment.pk,
        solution_id=assignment.solution_id,
        step_id=step.id,
        step_index=step.index,
        step_text=step.text,
        sees_hints=sees_hints,
        hints=shown or {},
    )
    return LabelSave(target=target, write=write, missing_step_ids=screen.missing_step_ids)
