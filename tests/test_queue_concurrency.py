"""The assignment queue under concurrency on real PostgreSQL: never past k, never twice to a person."""

import threading
from collections import Counter

import pytest
from django.db import connection

from annotation.models import Assignment, Project, Role
from annotation.services.queue import assignment_skip, assignment_submit, next_assignment
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
    assert connection.vendor == "postgresql", "this test is about PostgreSQL row locks"
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
