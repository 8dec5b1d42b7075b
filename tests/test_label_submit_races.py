"""Labels change only while the assignment is open: submit racing a label save or clear, on real connections.

Each trial sets up labels such that the two orders have different legal outcomes, then starts a
submit and a label change at the same moment in two threads (two PostgreSQL connections):
- clear first: the submit is refused (a required step lost its label); submit first: the clear is
  refused (the item is finished). Both succeeding means submit finished with a step unlabelled.
- in a first-error project whose only required step is the first, marked incorrect: changing it to
  correct first makes every step required, so the submit is refused; submit first refuses the
  save. Both succeeding means a label changed after the submit.
"""

import threading
from functools import partial

import pytest
from django.db import connection

from annotation.models import Assignment, HumanLabel, LabelMode, Project, Role
from annotation.services.label_save import (
    AssignmentClosed,
    assignment_step_label_clear,
    assignment_step_label_set,
)
from annotation.services.labels import step_label_set
from annotation.services.submit import SubmitRejected, member_assignment_submit
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)
TRIALS = 30


def _race(first, second) -> tuple[bool, bool]:
    """Run both at once; whether each succeeded."""
    barrier, outcome = threading.Barrier(2), {}

    def run(name, action):
        try:
            barrier.wait()
            action()
            outcome[name] = True
        except (AssignmentClosed, SubmitRejected):
            outcome[name] = False
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(name, action)) for name, action in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcome["a"], outcome["b"]


def _assignments(make_user, mode: str, labels: list[int | None]):
    project = Project.objects.create(name=f"race-{mode}", overlap=1, label_mode=mode)
    alice = make_user("alice")
    add_member(project, alice, Role.ANNOTATOR)
    for trial in range(TRIALS):
        solution = make_solution(project, f"q{trial}", ["one", "two", "three"])
        assignment = Assignment.objects.create(solution=solution, annotator=alice)
        steps = list(solution.steps.order_by("index"))
        for step, value in zip(steps, labels, strict=True):
            if value is not None:
                step_label_set(step_id=step.id, annotator_id=alice.id, value=value)
        yield project, alice, assignment, steps


def _submit(project, user, assignment):
    return partial(member_assignment_submit, user=user, project_id=project.id, assignment_id=assignment.id)


def test_submit_racing_a_label_clear_never_finishes_with_a_step_unlabelled(make_user):
    violations = 0
    for project, alice, assignment, steps in _assignments(make_user, LabelMode.ALL_STEPS, [1, 1, 1]):
        submitted, cleared = _race(
            _submit(project, alice, assignment),
            partial(
                assignment_step_label_clear,
                user=alice, project_id=project.id, assignment_id=assignment.id, step_id=steps[1].id,
            ),
        )
        assert submitted or cleared, "one of the two must win"
        finished = Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SUBMITTED
        unlabelled = not HumanLabel.objects.filter(step=steps[1], annotator=alice).exists()
        violations += (submitted and cleared) or (finished and unlabelled)
    assert violations == 0, f"{violations} of {TRIALS} submits finished with a required step unlabelled"


def test_submit_racing_a_label_save_never_lets_the_label_change_after_submit(make_user):
    violations = 0
    for project, alice, assignment, steps in _assignments(make_user, LabelMode.FIRST_ERROR, [-1, None, None]):
        submitted, saved = _race(
            _submit(project, alice, assignment),
            partial(
                assignment_step_label_set,
                user=alice, project_id=project.id, assignment_id=assignment.id, step_id=steps[0].id, value=1,
            ),
        )
        assert submitted or saved, "one of the two must win"
        finished = Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SUBMITTED
        changed = HumanLabel.objects.get(step=steps[0], annotator=alice).value == 1
        violations += (submitted and saved) or (finished and changed)
    assert violations == 0, f"{violations} of {TRIALS} labels changed after their assignment was submitted"
