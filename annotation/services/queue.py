"""The assignment queue: each solution goes to `overlap` different annotators, never twice to one.

Safe under concurrency on PostgreSQL: annotators asking at once pass over each other's
candidate rows (`SELECT ... FOR UPDATE SKIP LOCKED`), and a slot is taken by a conditional
UPDATE of the solution's `slots_taken` counter, which PostgreSQL re-checks on the row's latest
version, so no solution ever goes past its overlap, even when a competing request commits
between our read and our write.
"""

from __future__ import annotations

import random

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, GoldLabel, Project, Solution, Step
from annotation.services.statements import (
    assignment_from_row,
    assignment_time_add_statement,
    next_item_statement,
)
from annotation.services.submit import SubmitRejected

# Skipped assignments give their slot back to other annotators; hidden gold checks take none.
# Solution.slots_taken counts the assignments that hold one, so the queue reads a column
# instead of counting assignments per solution on every request.
_HOLDS_A_SLOT = ~Q(status=Assignment.Status.SKIPPED) & Q(is_gold_check=False)
_ATTEMPTS = 5


def _gold_check_candidate(project: Project, annotator) -> Solution | None:
    """A solution whose every step has an adjudicated gold label, not yet seen by this annotator."""
    unadjudicated_step = Step.objects.filter(solution=OuterRef("pk")).exclude(
        gold_label__source=GoldLabel.Source.ADJUDICATED
    )
    return (
        Solution.objects.filter(item__project=project, steps__isnull=False)
        .exclude(Exists(Assignment.objects.filter(solution=OuterRef("pk"), annotator=annotator)))
        .exclude(Exists(unadjudicated_step))
        .order_by("?")
        .first()
    )


def _open_or_take(project: Project, annotator, exclude_id: int | None, *, take: bool = True) -> Assignment | None:
    """The annotator's open assignment, else (when `take`) a slot of the first free solution: one round trip."""
    for _attempt in range(_ATTEMPTS):
        try:
            row = next_item_statement(
                project_id=project.pk, overlap=project.overlap, annotator_id=annotator.pk, exclude_id=exclude_id, take=take
            )
        except IntegrityError:
            continue  # this annotator took the same solution in another request a moment ago
        if row.work is not None:
            return assignment_from_row(row.work, project=project, annotator=annotator)
        if row.candidates == 0:
            return None  # nothing open for this annotator
        # else the candidate was full (now closed) or filled up between the read and the update
    return None


def next_assignment(
    *, project: Project, annotator, exclude: Assignment | None = None, rng: random.Random | None = None
) -> Assignment | None:
    """The annotator's open assignment in `project`, else a new one; None when nothing is left.

    With probability `project.gold_rate` the new one is a hidden quality check (an adjudicated item).
    `exclude` skips one open assignment (the page being worked on, when fetching the next one ahead).
    """
    exclude_id = exclude.pk if exclude is not None else None
    if project.gold_rate > 0 and (rng or random).random() < project.gold_rate:
        mine = _open_or_take(project, annotator, exclude_id, take=False)
        if mine is not None:
            return mine
        gold = _gold_check_candidate(project, annotator)
        if gold is not None:
            return Assignment.objects.create(solution=gold, annotator=annotator, is_gold_check=True)
    return _open_or_take(project, annotator, exclude_id)


def solution_slots_recount(*, solution_ids: list[int]) -> None:
    """Recount the slots of these solutions from their assignments (after edits outside the queue)."""
    held = (
        Assignment.objects.filter(_HOLDS_A_SLOT, solution=OuterRef("pk"))
        .order_by()
        .values("solution")
        .annotate(n=Count("id"))
        .values("n")[:1]
    )
    Solution.objects.filter(pk__in=solution_ids).update(slots_taken=Coalesce(Subquery(held), 0))
    overlap = Project.objects.filter(pk=OuterRef("project_id")).values("overlap")[:1]
    Solution.objects.filter(pk__in=solution_ids).update(
        queue_open=ExpressionWrapper(Q(slots_taken__lt=Subquery(overlap)), output_field=BooleanField())
    )


def project_queue_reopen(*, project_id: int, overlap: int) -> None:
    """Set each solution's open flag from its slots after the project's overlap changed."""
    solutions = Solution.objects.filter(project_id=project_id)
    solutions.filter(slots_taken__lt=overlap, queue_open=False).update(queue_open=True)
    solutions.filter(slots_taken__gte=overlap, queue_open=True).update(queue_open=False)


def solution_slot_release(*, solution_id: int) -> None:
    """Give a slot back (a skip, a deleted assignment): the solution is offered again."""
    Solution.objects.filter(pk=solution_id, slots_taken__gt=0).update(slots_taken=F("slots_taken") - 1, queue_open=True)


def assignment_skip(*, assignment: Assignment, reason: str = "", flag_bad_problem: bool = False) -> Assignment:
    """Skip (remembered: the item is not offered to this annotator again) or flag a broken problem."""
    if assignment.status != Assignment.Status.ASSIGNED:
        raise SubmitRejected(f"this item is already {assignment.get_status_display().lower()}")
    new_status = Assignment.Status.FLAGGED if flag_bad_problem else Assignment.Status.SKIPPED
    finished_at = timezone.now()
    with transaction.atomic():
        # Conditional, so two skips of one assignment at once release its slot only once.
        changed = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.ASSIGNED).update(
            status=new_status, reason=reason.strip(), finished_at=finished_at
        )
        if not changed:
            raise SubmitRejected("this item is already finished")
        assignment.status, assignment.reason, assignment.finished_at = new_status, reason.strip(), finished_at
        if new_status == Assignment.Status.SKIPPED and not assignment.is_gold_check:
            # The slot goes back to other annotators; skips are remembered (the row stays).
            solution_slot_release(solution_id=assignment.solution_id)
    return assignment


def assignment_add_time(*, assignment: Assignment, seconds: int) -> None:
    """Add a heartbeat's seconds to an open assignment, capped by the wall time since it was handed out.

    Added in the database, so concurrent heartbeats from two tabs add up instead of overwriting each other.
    """
    assignment_time_add_statement(assignment_id=assignment.pk, seconds=max(0, int(seconds)))
