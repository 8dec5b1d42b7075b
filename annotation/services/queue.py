"""The assignment queue: each solution goes to `overlap` different annotators, never twice to one.

Safe under concurrency on PostgreSQL: the candidate solution row is locked with
`SELECT ... FOR UPDATE SKIP LOCKED` while its assignment is created, so two annotators
asking at once never take the same last slot.
"""

from __future__ import annotations

import random

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, GoldLabel, HumanLabel, LabelMode, Project, Solution, Step

# Skipped assignments give their slot back to other annotators; hidden gold checks take none.
_HOLDS_A_SLOT = ~Q(status=Assignment.Status.SKIPPED) & Q(is_gold_check=False)


class SubmitRejected(ValueError):
    pass


def _slots_taken():
    return Coalesce(
        Subquery(
            Assignment.objects.filter(_HOLDS_A_SLOT, solution=OuterRef("pk"))
            .order_by()
            .values("solution")
            .annotate(n=Count("id"))
            .values("n")[:1]
        ),
        0,
    )


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


def next_assignment(*, project: Project, annotator, exclude: Assignment | None = None, rng: random.Random | None = None) -> Assignment | None:
    """The annotator's open assignment in `project`, else a new one; None when nothing is left.

    With probability `project.gold_rate` the new one is a hidden quality check (an adjudicated item).
    `exclude` skips one open assignment (the page being worked on, when fetching the next one ahead).
    """
    open_assignments = Assignment.objects.filter(
        annotator=annotator, solution__item__project=project, status=Assignment.Status.ASSIGNED
    ).order_by("created_at", "id")
    if exclude is not None:
        open_assignments = open_assignments.exclude(pk=exclude.pk)
    open_assignment = open_assignments.first()
    if open_assignment is not None:
        return open_assignment
    if project.gold_rate > 0 and (rng or random).random() < project.gold_rate:
        gold = _gold_check_candidate(project, annotator)
        if gold is not None:
            return Assignment.objects.create(solution=gold, annotator=annotator, is_gold_check=True)
    with transaction.atomic():
        candidate = (
            Solution.objects.filter(item__project=project)
            .exclude(Exists(Assignment.objects.filter(solution=OuterRef("pk"), annotator=annotator)))
            .alias(taken=_slots_taken())
            .filter(taken__lt=project.overlap)
            .order_by("-priority", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if candidate is None:
            return None
        return Assignment.objects.create(solution=candidate, annotator=annotator)


def required_steps(assignment: Assignment) -> list[Step]:
    """Steps that need a label before submitting: all, or up to the first incorrect one."""
    steps = list(assignment.solution.steps.order_by("index"))
    if assignment.solution.item.project.label_mode != LabelMode.FIRST_ERROR:
        return steps
    values = dict(
        HumanLabel.objects.filter(step__in=steps, annotator=assignment.annotator).values_list("step_id", "value")
    )
    needed = []
    for step in steps:
        needed.append(step)
        if values.get(step.id) == -1:
            break
    return needed


def assignment_submit(*, assignment: Assignment, seconds_spent: int = 0, cannot_judge_reason: str = "") -> Assignment:
    """Finish an assignment. Every required step must be labelled unless it is marked cannot-judge."""
    if assignment.status != Assignment.Status.ASSIGNED:
        raise SubmitRejected(f"this item is already {assignment.get_status_display().lower()}")
    if cannot_judge_reason.strip():
        assignment.status = Assignment.Status.CANNOT_JUDGE
        assignment.reason = cannot_judge_reason.strip()
    else:
        needed = required_steps(assignment)
        labelled = set(
            HumanLabel.objects.filter(step__in=needed, annotator=assignment.annotator).values_list("step_id", flat=True)
        )
        missing = [step.index + 1 for step in needed if step.id not in labelled]
        if missing:
            raise SubmitRejected(f"label every step first: step {', '.join(map(str, missing))} has no label")
        assignment.status = Assignment.Status.SUBMITTED
    assignment.seconds_spent += max(0, int(seconds_spent))
    assignment.finished_at = timezone.now()
    assignment.save()
    return assignment


def assignment_skip(*, assignment: Assignment, reason: str = "", flag_bad_problem: bool = False) -> Assignment:
    """Skip (remembered: the item is not offered to this annotator again) or flag a broken problem."""
    if assignment.status != Assignment.Status.ASSIGNED:
        raise SubmitRejected(f"this item is already {assignment.get_status_display().lower()}")
    assignment.status = Assignment.Status.FLAGGED if flag_bad_problem else Assignment.Status.SKIPPED
    assignment.reason = reason.strip()
    assignment.finished_at = timezone.now()
    assignment.save()
    return assignment


def assignment_add_time(*, assignment: Assignment, seconds: int) -> None:
    # F() so concurrent heartbeats from two tabs add up instead of overwriting each other.
    Assignment.objects.filter(pk=assignment.pk).update(seconds_spent=F("seconds_spent") + max(0, min(int(seconds), 3600)))
