"""Finishing an assignment: the request that ends every item, one statement (statements.submit_statement).

It checks access (a member of the project or staff; their own assignment, in that project),
refuses while required steps lack a label (all steps, or up to the first incorrect one in
first-error projects) unless a cannot-judge reason is given, and finishes the assignment only
if it is still open.
"""

from __future__ import annotations

from django.http import Http404

from annotation.models import Assignment
from annotation.services.label_save import AssignmentClosed
from annotation.services.statements import submit_statement

_ATTEMPTS = 5


class SubmitRejected(ValueError):
    @classmethod
    def unlabelled(cls, step_numbers) -> SubmitRejected:
        """Required steps (1-based) still lack a label."""
        return cls(f"label every step first: step {', '.join(map(str, step_numbers))} has no label")


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
    return _finish(
        user_id=user.pk,
        staff=bool(user.is_staff),
        project_id=project_id,
        assignment_id=assignment_id,
        seconds_spent=seconds_spent,
        cannot_judge_reason=cannot_judge_reason,
    )


def assignment_submit(*, assignment: Assignment, seconds_spent: int = 0, cannot_judge_reason: str = "") -> Assignment:
    """Finish an assignment on its annotator's behalf, for callers that checked access themselves.

    The same rules and refusals as `member_assignment_submit`; `assignment` is updated in place.
    """
    done = _finish(
        user_id=assignment.annotator_id,
        staff=True,  # the caller vouches for the annotator
        project_id=assignment.solution.project_id,
        assignment_id=assignment.pk,
        seconds_spent=seconds_spent,
        cannot_judge_reason=cannot_judge_reason,
    )
    assignment.status, assignment.reason = done.status, done.reason
    assignment.finished_at, assignment.seconds_spent = done.finished_at, done.seconds_spent
    return assignment


def _finish(
    *, user_id: int, staff: bool, project_id: int, assignment_id: int, seconds_spent: int, cannot_judge_reason: str
) -> Assignment:
    reason = cannot_judge_reason.strip()
    for _attempt in range(_ATTEMPTS):
        row = submit_statement(
            user_id=user_id,
            staff=staff,
            project_id=project_id,
            assignment_id=assignment_id,
            new_status=Assignment.Status.CANNOT_JUDGE if reason else Assignment.Status.SUBMITTED,
            reason=reason,
            seconds=max(0, int(seconds_spent)),
        )
        if row is None:
            raise Http404("No such assignment.")
        if row.finished is not None:
            return row.finished
        if row.status != Assignment.Status.ASSIGNED:
            raise AssignmentClosed(row.status)
        if row.missing_numbers:
            raise SubmitRejected.unlabelled(row.missing_numbers)
        # Finished by another request, or a label changed, after our snapshot: look again.
    raise SubmitRejected("the labels kept changing while submitting: try again")
