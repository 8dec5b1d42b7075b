"""The assignment queue under concurrency on real PostgreSQL: never past k, never twice to a person."""

import threading
from collections import Counter

import pytest
from django.db import connection

from annotation.models import Assignment, Project, Role, Solution
from annotation.services.assignments import user_delete
from annotation.services.queue import assignment_skip, next_assignment
from annotation.services.submit import SubmitRejected, assignment_submit
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)


def _take_all(project_id: int, user_id: int, barrier: threading.Barrier, taken: list, errors: list):
    from django.contrib.auth import get_user_model

    try:
        project = Project.objects.get(pk=project_id)
        user = get_user_model().objects.get(pk=user_id)
        barrier.wait()
        while True:
            assignment = next_assignment(project=project, annotator=user)
            if assignment is None:
                break
            taken.append((assignment.solution_id, user_id))
            assignment_submit(assignment=assignment, cannot_judge_reason="test: finish quickly")
    except Exception as exc:  # surfaced by the assertion below
        errors.append(exc)
    finally:
        connection.close()


def test_concurrent_annotators_never_exceed_overlap(make_user):
    project = Project.objects.create(name="race", overlap=2)
    solutions = [make_solution(project, f"q{i}", ["a", "b"]) for i in range(12)]
    users = [make_user(f"u{i}") for i in range(6)]
    for user in users:
        add_member(project, user, Role.ANNOTATOR)
    barrier = threading.Barrier(len(users))
    taken: list = []
    errors: list = []
    threads = [threading.Thread(target=_take_all, args=(project.id, u.id, barrier, taken, errors)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    per_solution = Counter(solution_id for solution_id, _ in taken)
    assert set(per_solution) == {s.id for s in solutions}
    assert max(per_solution.values()) == 2 and min(per_solution.values()) == 2
    assert len(set(taken)) == len(taken), "an annotator got the same item twice"
    assert Assignment.objects.count() == 24
    assert_slot_counts_match(project)


def assert_slot_counts_match(project):
    """Solution.slots_taken is what the queue reads: it must equal the assignments holding a slot,
    and the queue's open flag must say whether a slot is left."""
    project.refresh_from_db()
    for solution in Solution.objects.filter(item__project=project):
        held = solution.assignments.exclude(status=Assignment.Status.SKIPPED).filter(is_gold_check=False).count()
        assert solution.slots_taken == held, f"solution {solution.id}: counter {solution.slots_taken}, held {held}"
        assert solution.queue_open == (held < project.overlap), f"solution {solution.id}: open flag is wrong"
        assert solution.project_id == project.id


def _ask_and_skip(project_id: int, user_id: int, barrier: threading.Barrier, errors: list):
    from django.contrib.auth import get_user_model

    try:
        project = Project.objects.get(pk=project_id)
        user = get_user_model().objects.get(pk=user_id)
        barrier.wait()
        for round_ in range(6):
            assignment = next_assignment(project=project, annotator=user)
            if assignment is None:
                break
            if round_ % 2:
                assignment_skip(assignment=assignment, reason="test")
            else:
                assignment_submit(assignment=assignment, cannot_judge_reason="test")
    except Exception as exc:  # surfaced by the assertion below
        errors.append(exc)
    finally:
        connection.close()


def test_slot_counts_stay_exact_under_concurrent_asks_skips_and_deletes(make_user):
    project = Project.objects.create(name="slots", overlap=2)
    for i in range(5):
        make_solution(project, f"q{i}", ["a"])
    users = [make_user(f"s{i}") for i in range(6)]
    for user in users:
        add_member(project, user, Role.ANNOTATOR)
    barrier = threading.Barrier(len(users))
    errors: list = []
    threads = [threading.Thread(target=_ask_and_skip, args=(project.id, u.id, barrier, errors)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert_slot_counts_match(project)
    assert Solution.objects.filter(item__project=project, slots_taken__gt=2).count() == 0
    # Deleting people (as the admin does, through the service) gives their slots back.
    user_delete(user_ids=[users[0].pk, users[1].pk])
    assert_slot_counts_match(project)


def test_a_second_skip_of_one_assignment_is_refused_and_frees_one_slot(make_user):
    project = Project.objects.create(name="double-skip", overlap=1)
    solution = make_solution(project, "q", ["a"])
    user = make_user("d1")
    assignment = next_assignment(project=project, annotator=user)
    stale_copy = Assignment.objects.get(pk=assignment.pk)  # as a second tab holds it
    assignment_skip(assignment=assignment, reason="first")
    with pytest.raises(SubmitRejected):
        assignment_skip(assignment=stale_copy, reason="second")
    solution.refresh_from_db()
    assert solution.slots_taken == 0


def test_priority_orders_the_queue_and_skips_are_remembered(make_user):
    project = Project.objects.create(name="prio", overlap=1)
    low = make_solution(project, "low", ["a"])
    high = make_solution(project, "high", ["a"])
    high.priority = 5.0
    high.save()
    user = make_user("p1")
    first = next_assignment(project=project, annotator=user)
    assert first.solution_id == high.id
    assignment_skip(assignment=first, reason="unsure")
    second = next_assignment(project=project, annotator=user)
    assert second.solution_id == low.id, "a skipped item must not come back to the same person"
    # The skipped slot goes to someone else.
    other = make_user("p2")
    assert next_assignment(project=project, annotator=other).solution_id == high.id


def _take_one_each(project_id: int, user_id: int, barrier: threading.Barrier, taken: list, errors: list, rounds: int):
    from django.contrib.auth import get_user_model

    try:
        project = Project.objects.get(pk=project_id)
        user = get_user_model().objects.get(pk=user_id)
        barrier.wait()
        for _ in range(rounds):
            assignment = next_assignment(project=project, annotator=user)
            if assignment is None:
                break
            taken.append((assignment.solution_id, user_id))
            assignment_submit(assignment=assignment, cannot_judge_reason="test: finish quickly")
    except Exception as exc:  # surfaced by the assertion below
        errors.append(exc)
    finally:
        connection.close()


def test_started_items_are_completed_before_new_ones_are_opened(make_user):
    """With overlap k = 3, items other annotators started are handed out before fresh ones (within
    priority), under concurrency: none past k, none twice to a person."""
    project = Project.objects.create(name="agree-early", overlap=3)
    solutions = [make_solution(project, f"q{i}", ["a"]) for i in range(10)]
    high_fresh = make_solution(project, "high", ["a"])
    Solution.objects.filter(pk=high_fresh.pk).update(priority=1.0)
    first = make_user("first")
    add_member(project, first, Role.ANNOTATOR)
    # One annotator has started the last four of the default priority (and the high one is fresh).
    started = solutions[-4:]
    for solution in started:
        Assignment.objects.create(solution=solution, annotator=first, status=Assignment.Status.SUBMITTED)
    Solution.objects.filter(pk__in=[s.pk for s in started]).update(slots_taken=1)

    # Sequentially: the high-priority fresh one first (priority wins), then the started ones, oldest id first.
    probe = make_user("probe")
    add_member(project, probe, Role.ANNOTATOR)
    order = []
    for _ in range(6):
        assignment = next_assignment(project=project, annotator=probe)
        order.append(assignment.solution_id)
        assignment_submit(assignment=assignment, cannot_judge_reason="test")
    assert order[0] == high_fresh.id, "a started item must not jump a higher priority"
    assert order[1:5] == [s.id for s in started], "started items come before fresh ones of the same priority"
    assert order[5] == solutions[0].id

    # Concurrently: five annotators take two items each (10 takes). Before the round high and q0
    # hold 1 slot, the four started items 2: 8 slots of partly done items are left, which the
    # queue fills before opening fresh items (plain id order would fill q1, q2 and q3 instead and
    # leave the started ones short). A take racing past a locked row may open a fresh one early,
    # so one partial item may stay short; none passes k, none goes twice to a person.
    users = [make_user(f"c{i}") for i in range(5)]
    for user in users:
        add_member(project, user, Role.ANNOTATOR)
    barrier = threading.Barrier(len(users))
    taken: list = []
    errors: list = []
    threads = [
        threading.Thread(target=_take_one_each, args=(project.id, u.id, barrier, taken, errors, 2)) for u in users
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(taken) == 10
    assert len(set(taken)) == len(taken), "an annotator got the same item twice"
    per_solution = Counter(
        Assignment.objects.filter(solution__project=project).values_list("solution_id", flat=True)
    )
    assert max(per_solution.values()) <= 3, "an item went past k"
    partial_before = [high_fresh, solutions[0], *started]
    completed = [s.id for s in partial_before if per_solution[s.id] == 3]
    assert len(completed) >= len(partial_before) - 1, (per_solution, "started items were not completed first")
    opened = [s.id for s in solutions[1:-4] if per_solution.get(s.id)]
    assert sum(per_solution[s] for s in opened) <= 3, per_solution
    assert_slot_counts_match(project)
