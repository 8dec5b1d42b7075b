"""What an annotator is shown, and the reads behind next item and submit.

`labelling_screen` is the one selector of the labelling screen: the page and the REST API both
render it, so they show the same question, images, steps, labels, hints and reference answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotation.access import sees_machine_hints, sees_reference_answer
from annotation.models import Assignment, Item, ItemImage, Project, Solution
from annotation.services.statements import labelling_screen_statement
from stepmark import rows


@dataclass(frozen=True)
class LabellingScreen:
    item: Item
    answer: str | None  # the reference answer; None where the user may not see it
    images: list[tuple[int, str, int, int]]  # (position, sha256, width, height), in order
    steps: list[dict]  # id, index, text, hints (None where hidden), value (the user's label or None), error_category, error_note
    sees_hints: bool
    missing_step_ids: list[int]  # the steps the user must still label before submitting, in order

    @property
    def labelled(self) -> int:
        return sum(1 for step in self.steps if step["value"] is not None)


def labelling_screen(*, user, project: Project, solution: Solution) -> LabellingScreen:
    """`solution` (its item loaded) as `user` may see it in `project`, with the user's own labels.

    One statement (statements.labelling_screen_statement): next item shows it for every item taken.
    """
    with_hints = sees_machine_hints(user, project)
    item = solution.item
    row = labelling_screen_statement(
        solution_id=solution.pk, item_id=item.pk, annotator_id=user.pk, label_mode=project.label_mode,
        with_hints=with_hints,
    )
    return LabellingScreen(
        item=item,
        answer=item.answer if sees_reference_answer(user, project) else None,
        images=row.images,
        steps=row.steps,
        sees_hints=with_hints,
        missing_step_ids=row.missing_step_ids,
    )


def item_images(*, item_id: int) -> list[tuple[int, str, int, int]]:
    """(position, sha256, width, height) of the item's images, in order."""
    return list(
        ItemImage.objects.filter(item_id=item_id)
        .order_by("position")
        .values_list("position", "image__sha256", "image__width", "image__height")
    )


def assignment_labels(*, assignment: Assignment) -> tuple[list[tuple[int, int, int | None, str, str]], list[int]]:
    """(step id, index, the annotator's label or None, its error category, its note) for every step of
    the assignment's solution, in order, and the steps the annotator must still label (its solution
    and project loaded)."""
    row = labelling_screen_statement(
        solution_id=assignment.solution_id, item_id=None, annotator_id=assignment.annotator_id,
        label_mode=assignment.solution.project.label_mode, with_hints=False,
    )
    steps = [(s["id"], s["index"], s["value"], s["error_category"], s["error_note"]) for s in row.steps]
    return steps, row.missing_step_ids


def open_assignment_id(*, project_id: int, annotator_id: int, exclude_id: int | None = None) -> int | None:
    """The annotator's oldest unfinished assignment in the project."""
    return (
        Assignment.objects.filter(
            annotator_id=annotator_id, status=Assignment.Status.ASSIGNED, solution__project_id=project_id
        )
        .exclude(pk=exclude_id or 0)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )


def assignment_with_work(*, assignment_id: int, project: Project, annotator) -> Assignment:
    """The assignment with its solution and item loaded (and the given project and annotator attached)."""
    assignment = Assignment.objects.select_related("solution__item").get(pk=assignment_id)
    return _linked(assignment, project=project, annotator=annotator)


def assignment_from_row(row, *, project: Project, annotator) -> Assignment:
    """An assignment from a row of `columns(Assignment), columns(Solution), columns(Item)` (the queue's
    statement), all linked."""
    assignment, solution, item = rows.instances(row, Assignment, Solution, Item)
    solution.item, assignment.solution = item, solution
    return _linked(assignment, project=project, annotator=annotator)


def _linked(assignment: Assignment, *, project: Project, annotator) -> Assignment:
    solution = assignment.solution
    solution.item.project = solution.project = project
    assignment.annotator = annotator
    return assignment
