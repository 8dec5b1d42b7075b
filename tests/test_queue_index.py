"""The queue's own index: each solution's project and open flag stay true, and the queue walks them."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from annotation.models import Assignment, Item, Project, Role, Solution
from annotation.services import queue, statements
from annotation.services.assignments import assignment_delete
from annotation.services.projects import item_save, project_save
from annotation.services.queue import assignment_skip, next_assignment
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


def _flags(project) -> dict[str, tuple[int, bool]]:
    return {s.key: (s.slots_taken, s.queue_open) for s in Solution.objects.filter(project=project)}


def _take(project, annotator):
    return queue._open_or_take(project, annotator, None)


def test_the_queue_walks_its_partial_index(make_user):
    project = Project.objects.create(name="indexed", overlap=2)
    for i in range(40):
        make_solution(project, f"q{i}", ["a"], key=f"k{i}")
    user = make_user("walker")
    params = {
        "project": project.id, "overlap": 2, "user": user.id, "status": Assignment.Status.ASSIGNED, "exclude": 0,
        "take": True,
    }
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_solution")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + statements._next_item_sql(), params)  # planned, not run
        plan = "\n".join(row[0] for row in cursor.fetchall())
    candidate = plan.split("CTE candidate")[1].split("CTE taken")[0]
    assert "solution_queue" in candidate, plan
    assert "Sort" not in candidate, "the index gives the queue order; nothing should be sorted"


def test_the_open_flag_follows_takes_skips_and_deletes(make_user):
    project = Project.objects.create(name="flags", overlap=2)
    make_solution(project, "q1", ["a"], key="only")
    users = [make_user(f"f{i}") for i in range(3)]

    first = _take(project, users[0])
    assert _flags(project) == {"only": (1, True)}
    _take(project, users[1])
    assert _flags(project) == {"only": (2, False)}, "full: the queue must stop offering it"
    assert _take(project, users[2]) is None

    assignment_skip(assignment=first, reason="test")
    assert _flags(project) == {"only": (1, True)}, "a skip gives the slot back"
    third = _take(project, users[2])
    assert third is not None and _flags(project) == {"only": (2, False)}
    assignment_delete(assignment_ids=[third.pk])
    assert _flags(project) == {"only": (1, True)}, "a deleted assignment gives its slot back"


def test_a_stale_open_flag_is_closed_by_the_next_take(make_user):
    project = Project.objects.create(name="stale", overlap=1)
    make_solution(project, "q1", ["a"], key="full")
    make_solution(project, "q2", ["a"], key="free")
    _take(project, make_user("first"))
    Solution.objects.filter(key="full").update(queue_open=True)  # as after a release past the overlap

    got = _take(project, make_user("second"))
    assert got is not None and got.solution.key == "free"
    assert _flags(project) == {"full": (1, False), "free": (1, False)}


def test_overlap_changes_reopen_and_close_the_queue(make_user):
    project = Project.objects.create(name="overlap", overlap=1)
    make_solution(project, "q1", ["a"], key="s")
    user = make_user("o1")
    add_member(project, user, Role.ANNOTATOR)
    assert next_assignment(project=project, annotator=user) is not None
    assert _flags(project) == {"s": (1, False)}

    project.overlap = 2
    project_save(project=project)
    assert _flags(project) == {"s": (1, True)}
    other = make_user("o2")
    assert next_assignment(project=project, annotator=other).solution.key == "s"
    project.overlap = 1
    project_save(project=project)
    assert _flags(project) == {"s": (2, False)}


def test_each_solution_knows_its_project(make_user):
    home, away = Project.objects.create(name="home"), Project.objects.create(name="away", overlap=1)
    item = Item.objects.create(project=home, external_id="i1", question="?")
    by_save = Solution.objects.create(item=item, key="saved", response="")
    # bulk_create with only the item's id (as the importer's ORM path does): filled with one query
    by_bulk = Solution.objects.bulk_create([Solution(item_id=item.id, key="bulk", response="")])[0]
    assert by_save.project_id == home.id and Solution.objects.get(pk=by_bulk.pk).project_id == home.id

    Assignment.objects.create(solution=by_save, annotator=get_user_model().objects.create_user("mover"))
    Solution.objects.filter(pk=by_save.pk).update(slots_taken=1)
    item.project = away
    item_save(item=item)  # an admin moves the item: its solutions follow, open by the new project's overlap
    assert {s.key: (s.project_id, s.queue_open) for s in Solution.objects.all()} == {
        "saved": (away.id, False),
        "bulk": (away.id, True),
    }


def test_next_returns_my_open_assignment_and_reserves_one_ahead(make_user):
    import random

    project = Project.objects.create(name="ahead", overlap=1)
    for i in range(3):
        make_solution(project, f"q{i}", ["a"], key=f"k{i}")
    user = make_user("reader")
    first = next_assignment(project=project, annotator=user)
    again = next_assignment(project=project, annotator=user)
    assert again.id == first.id and again.solution.item.question == first.solution.item.question
    ahead = next_assignment(project=project, annotator=user, exclude=first)  # fetched while working on first
    assert ahead.solution_id != first.solution_id
    assert next_assignment(project=project, annotator=user, exclude=first).id == ahead.id, "reserved, not a third"
    assert Assignment.objects.filter(annotator=user).count() == 2

    project.gold_rate = 1.0  # a quality check is drawn but none is adjudicated: the queue, same rules
    project.save()
    assert next_assignment(project=project, annotator=user, exclude=first, rng=random.Random(0)).id == ahead.id
    assert Assignment.objects.filter(annotator=user).count() == 2
