"""A member's label save (one statement) and clear.

Both check access before writing anything (outsiders, other annotators' assignments and
finished assignments write nothing); the save records the machine hints the user is shown
(the labelling page's hints), keeps one row per (step, annotator) with a history row per
change, also under races, and says which required steps are still missing.
"""

import threading

import pytest
from django.db import connection
from django.http import Http404

from annotation.models import Assignment, AutoLabel, HumanLabel, LabelChange, LabelMode, Project, Role
from annotation.services.label_save import (
    AssignmentClosed,
    assignment_step_label_clear,
    assignment_step_label_set,
)
from annotation.services.labels import LabelRejected
from tests.factories import add_member, make_solution


@pytest.fixture
def work(make_user):
    """A project showing machine hints, one solution with two steps, alice's open assignment."""
    project = Project.objects.create(name="saves", overlap=2, show_machine_labels=True)
    solution = make_solution(project, "q1", ["first", "second"])
    first, second = solution.steps.order_by("index")
    # Two MC estimates of the first step: the later one is what annotators are shown.
    AutoLabel.objects.create(step=first, kind="mc", source="mc-old", score=0.125, num_correct=2, num_total=16)
    AutoLabel.objects.create(step=first, kind="mc", source="mc-new", score=0.75, num_correct=12, num_total=16)
    AutoLabel.objects.create(step=first, kind="prm", source="prm-v3", score=0.6)
    AutoLabel.objects.create(step=first, kind="imported", source="file", value=1)
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        add_member(project, user, Role.ANNOTATOR)
    assignment = Assignment.objects.create(solution=solution, annotator=alice)
    return project, assignment, first, second, alice, bob


def _save(user, project, assignment, step, value):
    return assignment_step_label_set(
        user=user, project_id=project.id, assignment_id=assignment.id, step_id=step.id, value=value
    )


@pytest.mark.django_db
def test_it_records_the_hints_the_page_shows(work):
    project, assignment, first, second, alice, _ = work
    expected = {
        "mc": {"score": 0.75, "right": 12, "total": 16, "source": "mc-new"},  # the newest MC label
        "prm": {"score": 0.6, "source": "prm-v3"},
    }

    saved = _save(alice, project, assignment, first, -1)
    assert saved.target.hints == expected
    assert (saved.target.step_index, saved.target.step_text, saved.target.sees_hints) == (0, "first", True)
    assert (saved.write.value, saved.write.previous, saved.write.changed) == (-1, None, True)
    assert HumanLabel.objects.get(step=first, annotator=alice).shown_hints == expected

    plain = _save(alice, project, assignment, second, 1)
    assert plain.target.hints == {} and HumanLabel.objects.get(step=second).shown_hints == {}


@pytest.mark.django_db
def test_hidden_hints_are_not_recorded(work):
    project, assignment, first, _, alice, _ = work
    Project.objects.filter(id=project.id).update(show_machine_labels=False)
    saved = _save(alice, project, assignment, first, 1)
    assert saved.target.sees_hints is False and saved.target.hints == {}
    assert HumanLabel.objects.get(step=first, annotator=alice).shown_hints == {}


@pytest.mark.django_db
def test_it_updates_keeps_history_and_never_touches_another_annotator(work):
    project, assignment, first, _, alice, bob = work
    theirs = Assignment.objects.create(solution=assignment.solution, annotator=bob)
    _save(bob, project, theirs, first, 1)

    _save(alice, project, assignment, first, 1)
    same = _save(alice, project, assignment, first, 1)
    assert (same.write.previous, same.write.changed) == (1, False)
    changed = _save(alice, project, assignment, first, 0)
    assert (changed.write.previous, changed.write.changed) == (1, True)

    assert HumanLabel.objects.get(step=first, annotator=alice).value == 0
    assert HumanLabel.objects.get(step=first, annotator=bob).value == 1
    history = LabelChange.objects.filter(step=first, annotator=alice).order_by("id")
    assert list(history.values_list("old_value", "new_value")) == [(None, 1), (1, 0)]


@pytest.mark.django_db
def test_it_validates_ownership(work, make_user):
    project, assignment, first, _, alice, bob = work
    outsider = make_user("mallory")
    with pytest.raises(Http404):
        _save(outsider, project, assignment, first, 1)  # not a member
    with pytest.raises(Http404):
        _save(bob, project, assignment, first, 1)  # a member, but alice's assignment
    other = Project.objects.create(name="elsewhere")
    add_member(other, alice, Role.ANNOTATOR)
    with pytest.raises(Http404):
        _save(alice, other, assignment, first, 1)  # the wrong project in the URL
    foreign_step = make_solution(other, "q9", ["x"]).steps.get()
    with pytest.raises(Http404):
        _save(alice, project, assignment, foreign_step, 1)  # a step of another solution
    assert not HumanLabel.objects.exists() and not LabelChange.objects.exists()


@pytest.mark.django_db
def test_staff_may_label_without_membership(work, make_user):
    project, assignment, first, _, _, _ = work
    staff = make_user("ops", staff=True)
    mine = Assignment.objects.create(solution=assignment.solution, annotator=staff)
    saved = _save(staff, project, mine, first, -1)
    assert saved.target.sees_hints and "mc" in saved.target.hints
    assert HumanLabel.objects.get(annotator=staff).value == -1


@pytest.mark.django_db
def test_a_finished_assignment_writes_nothing(work):
    project, assignment, first, _, alice, _ = work
    Assignment.objects.filter(id=assignment.id).update(status=Assignment.Status.SUBMITTED)
    with pytest.raises(AssignmentClosed) as closed:
        _save(alice, project, assignment, first, 1)
    assert closed.value.status == Assignment.Status.SUBMITTED and "submitted" in str(closed.value)
    assert not HumanLabel.objects.exists() and not LabelChange.objects.exists()


@pytest.mark.django_db
def test_a_bad_value_is_rejected_after_the_access_checks(work, make_user):
    project, assignment, first, _, alice, _ = work
    args = {"project_id": project.id, "assignment_id": assignment.id, "step_id": first.id}
    for bad in (2, "1", True, 1.0, None):
        with pytest.raises(LabelRejected):
            assignment_step_label_set(user=alice, value=bad, **args)
        with pytest.raises(Http404):  # an outsider learns nothing, whatever the value
            assignment_step_label_set(user=make_user(f"outsider-{bad!r}"), value=bad, **args)
    assert not HumanLabel.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_racing_saves_of_one_label_leave_one_row_and_a_chain_of_history(work):
    project, assignment, first, _, alice, _ = work
    values = [1, -1, 0, 1, -1, 0, 1, -1]
    barrier = threading.Barrier(len(values))
    results, errors = [], []

    def click(value):
        try:
            barrier.wait()
            results.append(_save(alice, project, assignment, first, value).write)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(value,)) for value in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert HumanLabel.objects.filter(step=first, annotator=alice).count() == 1
    history = list(LabelChange.objects.filter(step=first, annotator=alice).order_by("id"))
    assert history[0].old_value is None
    assert all(a.new_value == b.old_value for a, b in zip(history, history[1:], strict=False)), "history is not a chain"
    assert history[-1].new_value == HumanLabel.objects.get(step=first, annotator=alice).value
    assert len(history) == sum(write.changed for write in results)


@pytest.mark.django_db
def test_each_save_says_which_required_steps_are_still_missing(work, make_user):
    project, assignment, first, second, alice, _ = work
    third = assignment.solution.steps.create(index=2, text="third")
    assert _save(alice, project, assignment, second, 1).missing_step_ids == [first.id, third.id]
    assert _save(alice, project, assignment, first, 0).missing_step_ids == [third.id]

    Project.objects.filter(id=project.id).update(label_mode=LabelMode.FIRST_ERROR)
    # The first incorrect step ends what is required: the steps after it need no label.
    assert _save(alice, project, assignment, second, -1).missing_step_ids == []
    assert _save(alice, project, assignment, second, 1).missing_step_ids == [third.id]


@pytest.mark.django_db
def test_a_clear_checks_access_and_the_status_and_keeps_the_history(work, make_user):
    project, assignment, first, second, alice, bob = work
    args = {"project_id": project.id, "assignment_id": assignment.id, "step_id": first.id}
    _save(alice, project, assignment, first, 1)
    _save(alice, project, assignment, second, 1)
    for intruder in (bob, make_user("mallory")):  # another member's assignment; an outsider
        with pytest.raises(Http404):
            assignment_step_label_clear(user=intruder, **args)

    cleared = assignment_step_label_clear(user=alice, **args)
    assert (cleared.write.value, cleared.write.previous, cleared.write.changed) == (None, 1, True)
    assert (cleared.target.step_index, cleared.target.hints["mc"]["source"]) == (0, "mc-new")
    assert cleared.missing_step_ids == [first.id]
    again = assignment_step_label_clear(user=alice, **args)
    assert again.write.changed is False and again.missing_step_ids == [first.id]
    assert list(LabelChange.objects.filter(step=first).order_by("id").values_list("old_value", "new_value")) == [
        (None, 1), (1, None)
    ]

    Assignment.objects.filter(id=assignment.id).update(status=Assignment.Status.SUBMITTED)
    with pytest.raises(AssignmentClosed):
        assignment_step_label_clear(user=alice, **{**args, "step_id": second.id})
    assert HumanLabel.objects.filter(step=second, annotator=alice).exists()
