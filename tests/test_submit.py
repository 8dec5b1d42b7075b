"""A member's submit (one statement).

It checks access first (outsiders, another member's assignment, another project's: 404, and
nothing changes), refuse while required steps lack a label (all steps, or up to the first
incorrect one in first-error projects) unless a cannot-judge reason is given, and finish an
assignment once only, also when two submits race.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.http import Http404
from django.utils import timezone

from annotation.models import Assignment, LabelMode, Project, Role
from annotation.services.label_save import AssignmentClosed
from annotation.services.labels import step_label_set
from annotation.services.submit import SubmitRejected, member_assignment_submit
from tests.factories import add_member, make_solution


@pytest.fixture
def work(make_user):
    """A four-step solution; alice's open assignment; bob, another annotator of the project."""
    project = Project.objects.create(name="submits", overlap=2)
    solution = make_solution(project, "q1", ["one", "two", "three", "four"])
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        add_member(project, user, Role.ANNOTATOR)
    assignment = Assignment.objects.create(solution=solution, annotator=alice)
    # Handed out an hour ago: the seconds reported below fit the wall time since.
    Assignment.objects.filter(pk=assignment.pk).update(created_at=timezone.now() - timedelta(hours=1))
    return project, assignment, list(solution.steps.order_by("index")), alice, bob


def _submit(user, project, assignment, *, seconds=0, reason=""):
    return member_assignment_submit(
        user=user, project_id=project.id, assignment_id=assignment.id, seconds_spent=seconds, cannot_judge_reason=reason
    )


def _status(assignment) -> str:
    return Assignment.objects.get(pk=assignment.pk).status


@pytest.mark.django_db
def test_it_validates_ownership(work, make_user):
    project, assignment, steps, alice, bob = work
    for step in steps:
        step_label_set(step_id=step.id, annotator_id=alice.id, value=1)
    elsewhere = Project.objects.create(name="elsewhere")
    add_member(elsewhere, alice, Role.ANNOTATOR)
    mallory = make_user("mallory")
    for user, in_project in ((mallory, project), (bob, project), (alice, elsewhere)):
        with pytest.raises(Http404):
            _submit(user, in_project, assignment)
    assert _status(assignment) == Assignment.Status.ASSIGNED, "a refused submit must change nothing"

    staff = make_user("staff", staff=True)  # staff may work without a membership
    theirs = Assignment.objects.create(solution=assignment.solution, annotator=staff)
    step_label_set(step_id=steps[0].id, annotator_id=staff.id, value=-1)
    done = _submit(staff, project, theirs, reason="unreadable")
    assert (done.status, done.reason) == (Assignment.Status.CANNOT_JUDGE, "unreadable")


@pytest.mark.django_db
def test_every_required_step_needs_a_label(work):
    project, assignment, steps, alice, _ = work
    step_label_set(step_id=steps[1].id, annotator_id=alice.id, value=0)
    with pytest.raises(SubmitRejected, match=r"step 1, 3, 4 has no label"):
        _submit(alice, project, assignment)
    assert _status(assignment) == Assignment.Status.ASSIGNED

    project.label_mode = LabelMode.FIRST_ERROR  # only steps up to the first incorrect one count
    project.save()
    step_label_set(step_id=steps[2].id, annotator_id=alice.id, value=-1)
    with pytest.raises(SubmitRejected, match=r"step 1 has no label$"):
        _submit(alice, project, assignment)
    step_label_set(step_id=steps[0].id, annotator_id=alice.id, value=1)
    done = _submit(alice, project, assignment, seconds=7)

    stored = Assignment.objects.get(pk=assignment.pk)
    assert (done.status, done.seconds_spent, done.finished_at) == (
        stored.status,
        stored.seconds_spent,
        stored.finished_at,
    )
    assert (stored.status, stored.seconds_spent, stored.reason) == (Assignment.Status.SUBMITTED, 7, "")
    with pytest.raises(AssignmentClosed) as closed:
        _submit(alice, project, assignment, reason="again")
    assert closed.value.status == Assignment.Status.SUBMITTED
    assert Assignment.objects.get(pk=assignment.pk).reason == "", "a finished assignment must not change"


@pytest.mark.django_db
def test_cannot_judge_needs_no_labels_and_keeps_earlier_seconds(work):
    project, assignment, _, alice, _ = work
    Assignment.objects.filter(pk=assignment.pk).update(seconds_spent=30)  # heartbeats so far
    done = _submit(alice, project, assignment, seconds=12, reason="  the image is blank ")
    assert (done.status, done.reason, done.seconds_spent) == (Assignment.Status.CANNOT_JUDGE, "the image is blank", 42)


@pytest.mark.django_db(transaction=True)
def test_two_submits_at_once_finish_it_once(work):
    project, assignment, steps, alice, _ = work
    for step in steps:
        step_label_set(step_id=step.id, annotator_id=alice.id, value=1)
    outcomes, barrier = [], threading.Barrier(6)

    def submit_once() -> None:
        barrier.wait()
        try:
            _submit(alice, project, assignment, seconds=5)
            outcomes.append("done")
        except (AssignmentClosed, SubmitRejected):
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["done"] + ["refused"] * 5
    assert Assignment.objects.get(pk=assignment.pk).seconds_spent == 5, "the time is added once"


@pytest.mark.django_db
def test_time_on_task_never_passes_the_wall_time_since_the_assignment_was_handed_out(work):
    from annotation.services.queue import assignment_add_time

    project, assignment, _, alice, _ = work
    Assignment.objects.filter(pk=assignment.pk).update(created_at=timezone.now() - timedelta(seconds=100))
    assignment_add_time(assignment=assignment, seconds=60)
    assert Assignment.objects.get(pk=assignment.pk).seconds_spent == 60
    # A heartbeat claiming an hour gets the wall time (the test's transaction began a moment before).
    assignment_add_time(assignment=assignment, seconds=3600)
    capped = Assignment.objects.get(pk=assignment.pk).seconds_spent
    assert 90 <= capped <= 101
    assignment_add_time(assignment=assignment, seconds=-50)  # never goes down
    assert Assignment.objects.get(pk=assignment.pk).seconds_spent == capped
    done = _submit(alice, project, assignment, seconds=10**6, reason="unreadable")
    assert done.seconds_spent == capped, "the same transaction: no more wall time has passed"
