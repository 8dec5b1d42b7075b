"""A member finishes their own assignment: the request that ends every item.

On PostgreSQL the whole submit is one statement, so one round trip, like the label save: it
checks that the user may (member of the project, or staff; their own assignment, in that
project), finds the required steps that still lack a label (all steps, or up to the first
incorrect one in first-error projects) and finishes the assignment with a conditional UPDATE,
only if it is still open and nothing is missing. Other databases take the same steps with
three queries (`assignment_for_member`, then `assignment_submit`).
"""

from __future__ import annotations

from functools import cache

from django.db import connection
from django.http import Http404

from annotation.access import assignment_for_member
from annotation.models import Assignment, HumanLabel, LabelMode, Membership, Project, Solution, Step
from annotation.services.label_save import AssignmentClosed
from annotation.services.queue import SubmitRejected, assignment_submit
from stepmark import rows


def member_assignment_submit(
    *, user, project_id: int, assignment_id: int, seconds_spent: int = 0, cannot_judge_reason: str = ""
) -> Assignment:
    """Finish `user`'s own open assignment and return it as stored.

    Http404 for outsiders and for anything that is not theirs; AssignmentClosed when it is
    already finished; SubmitRejected when required steps have no label and no cannot-judge
    reason is given (the message names the steps).
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such project.")
    submit = _submit_postgresql if connection.vendor == "postgresql" else _submit_portable
    return submit(
        user=user,
        project_id=project_id,
        assignment_id=assignment_id,
        seconds_spent=seconds_spent,
        cannot_judge_reason=cannot_judge_reason,
    )


def _submit_portable(*, user, project_id: int, assignment_id: int, seconds_spent: int, cannot_judge_reason: str):
    """Any database: the access query, then the labels, then the conditional update."""
    assignment = assignment_for_member(user, project_id, assignment_id)
    if assignment.status != Assignment.Status.ASSIGNED:
        raise AssignmentClosed(assignment.status)
    return assignment_submit(
        assignment=assignment, seconds_spent=seconds_spent, cannot_judge_reason=cannot_judge_reason
    )


def _submit_postgresql(*, user, project_id: int, assignment_id: int, seconds_spent: int, cannot_judge_reason: str):
    """PostgreSQL: access, required steps and the update in one statement (one round trip)."""
    reason = cannot_judge_reason.strip()
    params = {
        "user": user.pk,
        "staff": bool(user.is_staff),
        "assignment": int(assignment_id),
        "project": int(project_id),
        "open": Assignment.Status.ASSIGNED,
        "first_error": LabelMode.FIRST_ERROR,
        "reason": reason,
        "new_status": Assignment.Status.CANNOT_JUDGE if reason else Assignment.Status.SUBMITTED,
        "seconds": max(0, int(seconds_spent)),
    }
    with connection.cursor() as cursor:
        cursor.execute(_submit_sql(), params)
        row = cursor.fetchone()
    if row is None:
        raise Http404("No such assignment.")
    status, missing, finished = row[0], row[1], row[2:]
    if finished[0] is not None:
        return rows.instance(Assignment, finished)
    if status != Assignment.Status.ASSIGNED:
        raise AssignmentClosed(status)
    if missing:
        raise SubmitRejected.unlabelled(missing)
    raise SubmitRejected("this item is already finished")  # by another request, after our snapshot


@cache
def _submit_sql() -> str:
    assignment, solution, project = Assignment._meta.db_table, Solution._meta.db_table, Project._meta.db_table
    membership, step, label = Membership._meta.db_table, Step._meta.db_table, HumanLabel._meta.db_table
    # `target` is the access check (no row: 404). `missing` lists the required steps without a
    # label (1-based), none when a cannot-judge reason is given. The UPDATE re-checks the
    # status on the row's latest version, so a second submit at the same moment changes nothing.
    return f"""
        WITH target AS (
            SELECT a.id, a.status, a.solution_id, p.label_mode
            FROM {assignment} a
            JOIN {solution} s ON s.id = a.solution_id
            JOIN {project} p ON p.id = s.project_id
            LEFT JOIN {membership} m ON m.project_id = p.id AND m.user_id = %(user)s
            WHERE a.id = %(assignment)s AND a.annotator_id = %(user)s AND p.id = %(project)s
              AND (m.role IS NOT NULL OR %(staff)s)
        ), labels AS (
            SELECT st."index", hl.value FROM {step} st
            LEFT JOIN {label} hl ON hl.step_id = st.id AND hl.annotator_id = %(user)s
            WHERE st.solution_id = (SELECT solution_id FROM target) AND %(reason)s = ''
        ), missing AS (
            SELECT "index" FROM labels
            WHERE value IS NULL
              AND ((SELECT label_mode FROM target) <> %(first_error)s
                   OR "index" < COALESCE((SELECT MIN("index") FROM labels WHERE value = -1), "index" + 1))
        ), finished AS (
            UPDATE {assignment} AS a
            SET status = %(new_status)s, reason = %(reason)s, finished_at = now(),
                seconds_spent = a.seconds_spent + %(seconds)s
            FROM target
            WHERE a.id = target.id AND a.status = %(open)s AND NOT EXISTS (SELECT 1 FROM missing)
            RETURNING {rows.columns(Assignment, "a")}
        )
        SELECT target.status, (SELECT array_agg("index" + 1 ORDER BY "index") FROM missing), finished.*
        FROM target LEFT JOIN finished ON true
    """
