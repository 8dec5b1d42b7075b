"""A member's label save: the one-statement PostgreSQL path and the portable path agree.

Both check access before writing anything (outsiders, other annotators' assignments and
finished assignments write nothing), record the same machine hints as `label_target` reads,
and keep one row per (step, annotator) with a history row per change, also under races.
"""

import threading

import pytest
from django.db import connection
from django.http import Http404

from annotation.label_targets import label_target
from annotation.models import Assignment, AutoLabel, HumanLabel, LabelChange, Project, Role
from annotation.services import label_save
from annotation.services.label_save import AssignmentClosed, assignment_step_label_set
from annotation.services.labels import LabelRejected
from tests.factories import add_member, make_solution

SAVERS = {
    "postgresql": label_save._save_postgresql,  # one statement
    "portable": label_save._save_portable,  # label_target, then step_label_set (SQLite's path)
}


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


def _save(saver, user, project, assignment, step, value):
    return SAVERS[saver](user=user, project_id=project.id, assignment_id=assignment.id, step_id=step.id, value=value)


@pytest.mark.django_db
@pytest.mark.parametrize("saver", sorted(SAVERS))
def test_it_records_the_hints_label_target_reads(saver, work):
    assert connection.vendor == "postgresql"
    project, assignment, first, second, alice, _ = work
    expected = label_target(user=alice, project_id=project.id, assignment_id=assignment.id, step_id=first.id).hints
    assert expected == {
        "mc": {"score": 0.75, "right": 12, "total": 16, "source": "mc-new"},
        "prm": {"score": 0.6, "source": "prm-v3"},
    }

    saved = _save(saver, alice, project, assignment, first, -1)
    assert saved.target.hints == expected
    assert (saved.target.step_index, saved.target.step_text, saved.target.sees_hints) == (0, "first", True)
    assert (saved.write.value, saved.write.previous, saved.write.changed) == (-1, None, True)
    assert HumanLabel.objects.get(step=first, annotator=alice).shown_hints == expected

    plain = _save(saver, alice, project, assignment, second, 1)
    assert plain.target.hints == {} and HumanLabel.objects.get(step=second).shown_hints == {}


@pytest.mark.django_db
@pytest.mark.parametrize("saver", sorted(SAVERS))
def test_hidden_hints_are_not_recorded(saver, work):
    project, assignment, first, _, alice, _ = work
    Project.objects.filter(id=project.id).update(show_machine_labels=False)
    saved = _save(saver, alice, project, assignment, first, 1)
    assert saved.target.sees_hints is False and saved.target.hints == {}
    assert HumanLabel.objects.get(step=first, annotator=alice).shown_hints == {}


@pytest.mark.django_db
@pytest.mark.parametrize("saver", sorted(SAVERS))
def test_it_updates_keeps_history_and_never_touches_another_annotator(saver, work):
    project, assignment, first, _, alice, bob = work
    theirs = Assignment.objects.create(solution=assignment.solution, annotator=bob)
    _save(saver, bob, project, theirs, first, 1)

    _save(saver, alice, project, assignment, first, 1)
    same = _save(saver, alice, project, assignment, first, 1)
    assert (same.write.previous, same.write.changed) == (1, False)
    changed = _save(saver, alice, project, assignment, first, 0)
    assert (changed.write.previous, changed.write.changed) == (1, True)

    assert HumanLabel.objects.get(step=first, annotator=alice).value == 0
    assert HumanLabel.objects.get(step=first, annotator=bob).value == 1
    history = LabelChange.objects.filter(step=first, annotator=alice).order_by("id")
    assert list(history.values_list("old_value", "new_value")) == [(None, 1), (1, 0)]


@pytest.mark.django_db
@pytest.mark.parametrize("saver", sorted(SAVERS))
def test_it_validates_ownership(saver, work, make_user):
    project, assignment, first, _, alice, bob = work
    outsider = make_user("mallory")
    with pytest.raises(Http404):
        _save(saver, outsider, project, assignment, first, 1)  # not a member
    with pytest.raises(Http404):
        _save(saver, bob, project, assignment, first, 1)  # a member, but alice's assignment
    other = Project.objects.create(name="elsewhere")
    add_member(other, alice, Role.ANNOTATOR)
    with pytest.raises(Http404):
        _save(saver, alice, other, assignment, first, 1)  # the wrong project in the URL
    foreign_step = make_solution(other, "q9", ["x"]).steps.get()
    with pytest.raises(Http404):
        _save(saver, alice, project, assignment, foreign_step, 1)  # a step of another solution
    assert not HumanLabel.objects.exists() and not LabelChange.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("saver", sorted(SAVERS))
def test_staff_may_label_without_membership(saver, work, make_user):
    project, assignment, first, _, _, _ = work
    staff = make_user("ops", staff=True)
    mine = Assignment.objects.create(solution=assignment.solution, annotator=staff)
    saved = _save(saver, staff, project, mine, first, -1)
    assert saved.target.sees_hints and "mc" in saved.target.hints
    assert HumanLabel.objects.get(annotator=staff).value == -1


@pytest.mark.django_db
@pytest.mark.parametrize("saver", sorted(SAVERS))
def test_a_finished_assignment_writes_nothing(saver, work):
    project, assignment, first, _, alice, _ = work
    Assignment.objects.filter(id=assignment.id).update(status=Assignment.Status.SUBMITTED)
    with pytest.raises(AssignmentClosed) as closed:
        _save(saver, alice, project, assignment, first, 1)
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
            results.append(_save("postgresql", alice, project, assignment, first, value).write)
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
