"""The assignment queue: each solution goes to `overlap` different annotators, never twice to one.

Safe under concurrency on PostgreSQL: annotators asking at once pass over each other's
candidate rows (`SELECT ... FOR UPDATE SKIP LOCKED`), and a slot is taken by a conditional
UPDATE of the solution's `slots_taken` counter, which PostgreSQL re-checks on the row's latest
version, so no solution ever goes past its overlap, even when a competing request commits
between our read and our write.
"""

from __future__ import annotations

import random
from functools import cache

from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.labelling_reads import (
    assignment_from_row,
    assignment_with_work,
    open_assignment_id,
    steps_with_labels,
)
from annotation.models import Assignment, GoldLabel, Item, LabelMode, Project, Solution, Step
from stepmark import rows

# Skipped assignments give their slot back to other annotators; hidden gold checks take none.
# Solution.slots_taken counts the assignments that hold one, so the queue reads a column
# instead of counting assignments per solution on every request.
_HOLDS_A_SLOT = ~Q(status=Assignment.Status.SKIPPED) & Q(is_gold_check=False)
_ATTEMPTS = 5


class SubmitRejected(ValueError):
    @classmethod
    def unlabelled(cls, step_numbers) -> SubmitRejected:
        """Required steps (1-based) still lack a label: the one message both submit paths give."""
        return cls(f"label every step first: step {', '.join(map(str, step_numbers))} has no label")


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


@cache
def _open_or_take_sql() -> str:
    solution, assignment, item = Solution._meta.db_table, Assignment._meta.db_table, Item._meta.db_table
    a_cols, s_cols, i_cols = rows.columns(Assignment, "a"), rows.columns(Solution, "s"), rows.columns(Item, "i")
    c_cols, t_cols = rows.columns(Assignment, "c"), rows.columns(Solution, "t")
    # One statement, one round trip: the annotator's oldest open assignment in the project if
    # there is one (`mine`); else walk the project's open solutions in queue order on their own
    # partial index (solution_queue) to the first one nobody is taking right now (SKIP LOCKED)
    # and this annotator has not had; take a slot only if one is still free in its latest
    # version (the UPDATE re-checks after the lock), closing it when that was the last; create
    # the assignment. A candidate found full (its open flag was stale) is closed instead. A
    # unique violation (the same annotator asking twice at once) rolls the whole statement back.
    # The answer is one row: the assignment with its solution and item (NULLs when none), and
    # how many candidates were seen (0: nothing is left for this annotator).
    return f"""
        WITH mine AS (
            SELECT a.id FROM {assignment} a JOIN {solution} s ON s.id = a.solution_id
            WHERE a.annotator_id = %(user)s AND a.status = %(status)s AND s.project_id = %(project)s
              AND a.id <> %(exclude)s
            ORDER BY a.created_at, a.id
            LIMIT 1
        ), candidate AS (
            SELECT s.id FROM {solution} s
            WHERE s.project_id = %(project)s AND s.queue_open AND NOT EXISTS (SELECT 1 FROM mine)
              AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.solution_id = s.id AND a.annotator_id = %(user)s)
            ORDER BY s.priority DESC, s.id
            LIMIT 1
            FOR UPDATE OF s SKIP LOCKED
        ), taken AS (
            UPDATE {solution} AS s
            SET slots_taken = s.slots_taken + 1, queue_open = s.slots_taken + 1 < %(overlap)s
            FROM candidate WHERE s.id = candidate.id AND s.slots_taken < %(overlap)s
            RETURNING s.*
        ), closed AS (
            UPDATE {solution} AS s SET queue_open = false
            FROM candidate WHERE s.id = candidate.id AND s.slots_taken >= %(overlap)s
            RETURNING s.id
        ), created AS (
            INSERT INTO {assignment} (solution_id, annotator_id, status, reason, is_gold_check, seconds_spent, created_at)
            SELECT taken.id, %(user)s, %(status)s, '', false, 0, now() FROM taken
            RETURNING *
        ), work AS (
            SELECT {a_cols}, {s_cols}, {i_cols} FROM {assignment} a
            JOIN {solution} s ON s.id = a.solution_id JOIN {item} i ON i.id = s.item_id
            WHERE a.id = (SELECT id FROM mine)
            UNION ALL
            SELECT {c_cols}, {t_cols}, {i_cols} FROM created c
            JOIN taken t ON t.id = c.solution_id JOIN {item} i ON i.id = t.item_id
        )
        SELECT work.*, (SELECT COUNT(*) FROM candidate) FROM (SELECT 1) AS one LEFT JOIN work ON true
    """


def _open_or_take_postgresql(project: Project, annotator, exclude_id: int | None) -> Assignment | None:
    params = {
        "project": project.pk,
        "overlap": project.overlap,
        "user": annotator.pk,
        "status": Assignment.Status.ASSIGNED,
        "exclude": exclude_id or 0,
    }
    for _attempt in range(_ATTEMPTS):
        try:
            row = _one_statement(_open_or_take_sql(), params)
        except IntegrityError:
            continue  # this annotator took the same solution in another request a moment ago
        if row[0] is not None:
            return assignment_from_row(row[:-1], project=project, annotator=annotator)
        if row[-1] == 0:
            return None  # nothing open for this annotator
        # else the candidate was full (now closed) or filled up between the read and the update
    return None


def _one_statement(sql: str, params: dict) -> tuple:
    """Run one statement that must be all or nothing, and fetch its one row.

    A single statement is its own transaction in autocommit mode, so it needs no BEGIN and
    COMMIT round trips; inside a caller's transaction a savepoint keeps a failed statement
    (a unique violation) from breaking it.
    """
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@transaction.atomic
def _take_slot_orm(project: Project, annotator) -> Assignment | None:
    """Any database (SQLite in development): the same steps, one query each."""
    for candidate in (
        Solution.objects.filter(project=project, queue_open=True)
        .exclude(Exists(Assignment.objects.filter(solution=OuterRef("pk"), annotator=annotator)))
        .order_by("-priority", "id")
        .select_for_update(skip_locked=True, of=("self",))[:_ATTEMPTS]
    ):
        taken = Solution.objects.filter(pk=candidate.pk, slots_taken__lt=project.overlap).update(
            slots_taken=F("slots_taken") + 1,
            queue_open=ExpressionWrapper(Q(slots_taken__lt=project.overlap - 1), output_field=BooleanField()),
        )
        if taken:
            return Assignment.objects.create(solution=candidate, annotator=annotator)
        Solution.objects.filter(pk=candidate.pk).update(queue_open=False)  # found full: close it
    return None


def next_assignment(
    *, project: Project, annotator, exclude: Assignment | None = None, rng: random.Random | None = None
) -> Assignment | None:
    """The annotator's open assignment in `project`, else a new one; None when nothing is left.

    With probability `project.gold_rate` the new one is a hidden quality check (an adjudicated item).
    `exclude` skips one open assignment (the page being worked on, when fetching the next one ahead).
    """
    exclude_id = exclude.pk if exclude is not None else None
    gold_check = project.gold_rate > 0 and (rng or random).random() < project.gold_rate
    if connection.vendor == "postgresql" and not gold_check:
        return _open_or_take_postgresql(project, annotator, exclude_id)  # one round trip
    open_id = open_assignment_id(project_id=project.pk, annotator_id=annotator.pk, exclude_id=exclude_id)
    if open_id is not None:
        return assignment_with_work(assignment_id=open_id, project=project, annotator=annotator)
    if gold_check:
        gold = _gold_check_candidate(project, annotator)
        if gold is not None:
            return Assignment.objects.create(solution=gold, annotator=annotator, is_gold_check=True)
    if connection.vendor == "postgresql":
        return _open_or_take_postgresql(project, annotator, exclude_id)
    return _take_slot_orm(project, annotator)


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


def _required(rows: list[tuple[int, int, int | None]], label_mode: str) -> list[tuple[int, int, int | None]]:
    """Steps that need a label before submitting: all, or up to the first incorrect one."""
    if label_mode != LabelMode.FIRST_ERROR:
        return rows
    needed = []
    for row in rows:
        needed.append(row)
        if row[2] == -1:
            break
    return needed


def assignment_submit(*, assignment: Assignment, seconds_spent: int = 0, cannot_judge_reason: str = "") -> Assignment:
    """Finish an assignment. Every required step must be labelled unless it is marked cannot-judge."""
    if assignment.status != Assignment.Status.ASSIGNED:
        raise SubmitRejected(f"this item is already {assignment.get_status_display().lower()}")
    reason = cannot_judge_reason.strip()
    if reason:
        new_status = Assignment.Status.CANNOT_JUDGE
    else:
        labels = steps_with_labels(solution_id=assignment.solution_id, annotator_id=assignment.annotator_id)
        missing = [
            index + 1
            for _, index, value in _required(labels, assignment.solution.item.project.label_mode)
            if value is None
        ]
        if missing:
            raise SubmitRejected.unlabelled(missing)
        new_status = Assignment.Status.SUBMITTED
    finished_at = timezone.now()
    # Conditional, so a second submit is refused; added, so heartbeats' seconds are kept.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Assignment._meta.db_table} SET status = %s, reason = %s, finished_at = %s, "
            f"seconds_spent = seconds_spent + %s WHERE id = %s AND status = %s RETURNING seconds_spent",
            [
                new_status,
                reason,
                connection.ops.adapt_datetimefield_value(finished_at),
                max(0, int(seconds_spent)),
                assignment.pk,
                Assignment.Status.ASSIGNED,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        raise SubmitRejected("this item is already finished")
    assignment.status, assignment.reason, assignment.finished_at, assignment.seconds_spent = (
        new_status,
        reason,
        finished_at,
        row[0],
    )
    return assignment


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
    # F() so concurrent heartbeats from two tabs add up instead of overwriting each other.
    Assignment.objects.filter(pk=assignment.pk).update(
        seconds_spent=F("seconds_spent") + max(0, min(int(seconds), 3600))
    )
