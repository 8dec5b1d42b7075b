"""Writing one label outside the labelling screen (step_label_set, through the ORM).

It keeps one row per (step, annotator), never touches another annotator's label, and writes one
history row per change of value (from, to) — also when requests for the same label race.
"""

import threading

import pytest
from django.db import connection

from annotation.models import HumanLabel, LabelChange, Project, Role
from annotation.services.labels import LabelRejected, step_label_clear, step_label_set
from tests.factories import add_member, make_solution


@pytest.fixture
def step_and_users(make_user):
    project = Project.objects.create(name="writes", overlap=2)
    solution = make_solution(project, "q1", ["a", "b"])
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        add_member(project, user, Role.ANNOTATOR)
    return solution.steps.order_by("index").first(), alice, bob


def _history(step, user) -> list[tuple]:
    return list(
        LabelChange.objects.filter(step=step, annotator=user).order_by("id").values_list("old_value", "new_value")
    )


@pytest.mark.django_db
def test_it_inserts_updates_and_keeps_history(step_and_users):
    write = step_label_set
    step, alice, bob = step_and_users
    hints = {"mc": {"score": 0.5, "right": 8, "total": 16, "source": "mc"}}

    first = write(step_id=step.id, annotator_id=alice.id, value=1, shown_hints=hints)
    assert (first.value, first.previous, first.changed) == (1, None, True)
    write(step_id=step.id, annotator_id=bob.id, value=-1, shown_hints={})

    same = write(step_id=step.id, annotator_id=alice.id, value=1, shown_hints=hints)
    assert (same.previous, same.changed) == (1, False)
    changed = write(step_id=step.id, annotator_id=alice.id, value=0, shown_hints=None)
    assert (changed.value, changed.previous, changed.changed) == (0, 1, True)

    label = HumanLabel.objects.get(step=step, annotator=alice)
    assert label.value == 0
    assert label.shown_hints == hints, "None must leave the recorded hints as they were"
    assert _history(step, alice) == [(None, 1), (1, 0)]
    assert HumanLabel.objects.get(step=step, annotator=bob).value == -1, "another annotator's label changed"
    assert _history(step, bob) == [(None, -1)]

    new_hints = {"prm": {"score": 0.9, "source": "prm-v2"}}
    write(step_id=step.id, annotator_id=alice.id, value=0, shown_hints=new_hints)
    assert HumanLabel.objects.get(step=step, annotator=alice).shown_hints == new_hints
    assert _history(step, alice) == [(None, 1), (1, 0)], "a change of hints alone is not a change of label"


@pytest.mark.django_db
def test_it_rejects_values_outside_the_scale(step_and_users):
    step, alice, _ = step_and_users
    for bad in (2, -2, True, "1"):
        with pytest.raises(LabelRejected, match="not one of -1, 0, 1"):
            step_label_set(step_id=step.id, annotator_id=alice.id, value=bad)
    assert not HumanLabel.objects.exists() and not LabelChange.objects.exists()


@pytest.mark.django_db
def test_clearing_is_kept_in_the_history(step_and_users):
    step, alice, _ = step_and_users
    step_label_set(step_id=step.id, annotator_id=alice.id, value=-1)
    step_label_clear(step_id=step.id, annotator_id=alice.id)
    step_label_set(step_id=step.id, annotator_id=alice.id, value=1)
    assert _history(step, alice) == [(None, -1), (-1, None), (None, 1)]
    assert HumanLabel.objects.get(step=step, annotator=alice).value == 1


@pytest.mark.django_db(transaction=True)
def test_racing_writes_of_one_label_leave_one_row_and_a_consistent_history(step_and_users):
    """Eight threads write the same (step, annotator) at once, twice each (two tabs, double clicks)."""
    write = step_label_set
    step, alice, _ = step_and_users
    barrier = threading.Barrier(8)
    results, errors = [], []

    def hammer(n: int) -> None:
        try:
            barrier.wait()
            for value in (n % 3 - 1, (n + 1) % 3 - 1):
                results.append(write(step_id=step.id, annotator_id=alice.id, value=value, shown_hints={}))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert HumanLabel.objects.filter(step=step, annotator=alice).count() == 1
    history = _history(step, alice)
    assert history[0][0] is None and sum(old is None for old, _ in history) == 1, "created twice"
    for (_, before), (after, _) in zip(history, history[1:], strict=False):
        assert before == after, f"history is not a chain: {history}"
    assert history[-1][1] == HumanLabel.objects.get(step=step, annotator=alice).value
    assert len(history) == sum(result.changed for result in results)


@pytest.mark.django_db
def test_lookups_of_a_steps_labels_use_the_unique_index():
    """HumanLabel.step has no index of its own (migration 0005): the (step, annotator) one serves."""
    sql, params = HumanLabel.objects.filter(step_id=1).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY indexname", [HumanLabel._meta.db_table]
        )
        indexes = [row[0] for row in cursor.fetchall()]
    assert "humanlabel_one_per_annotator" in plan, plan
    assert len(indexes) == 3, indexes  # primary key, annotator, unique (step, annotator)
