"""Hidden gold items: mixed into the queue at the project's rate, scored per annotator."""

import random

import pytest

from annotation.models import Assignment, GoldLabel, Project, Role
from annotation.quality import gold_accuracy
from annotation.services.labels import gold_label_set, step_label_set
from annotation.services.queue import next_assignment
from annotation.services.submit import assignment_submit
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


def test_gold_items_are_mixed_in_at_the_rate_and_scored(make_user, client):
    project = Project.objects.create(name="QC", overlap=1, gold_rate=1.0)
    reviewer = make_user("rev")
    gold_solution = make_solution(project, "gold", ["a", "b"])
    for step, value in zip(gold_solution.steps.order_by("index"), (1, -1), strict=True):
        gold_label_set(step=step, reviewer=reviewer, value=value)
    regular = make_solution(project, "plain", ["c"])
    annotator = make_user("ann")
    add_member(project, annotator, Role.ANNOTATOR)

    first = next_assignment(project=project, annotator=annotator, rng=random.Random(0))
    assert first.solution_id == gold_solution.id and first.is_gold_check
    a, b = gold_solution.steps.order_by("index")
    step_label_set(step_id=a.id, annotator_id=annotator.id, value=1)
    step_label_set(step_id=b.id, annotator_id=annotator.id, value=1)  # wrong: gold says -1
    assignment_submit(assignment=first)
    # The gold check takes no overlap slot: the item can still go to the regular queue of others.
    second = next_assignment(project=project, annotator=annotator, rng=random.Random(0))
    assert second.solution_id == regular.id and not second.is_gold_check

    [row] = gold_accuracy(project=project)
    assert (row.annotator, row.items, row.steps, row.matches) == ("ann", 1, 2, 1)
    assert row.accuracy == 0.5

    add_member(project, reviewer, Role.REVIEWER)
    client.login(username="rev", password="pw-rev")
    page = client.get(f"/projects/{project.id}/review/").content.decode()
    assert "50%" in page and "ann" in page


def test_no_gold_checks_at_rate_zero(make_user):
    project = Project.objects.create(name="No QC", overlap=1, gold_rate=0.0)
    reviewer = make_user("rev2")
    gold_solution = make_solution(project, "gold", ["a"])
    gold_label_set(step=gold_solution.steps.get(), reviewer=reviewer, value=1)
    annotator = make_user("ann2")
    assignment = next_assignment(project=project, annotator=annotator, rng=random.Random(0))
    assert not assignment.is_gold_check
    assert GoldLabel.objects.count() == 1 and Assignment.objects.filter(is_gold_check=True).count() == 0


def test_review_list_title_is_plain_text(make_user, client):
    project = Project.objects.create(name="Titled")
    reviewer = make_user("rev3")
    add_member(project, reviewer, Role.REVIEWER)
    client.login(username="rev3", password="pw-rev3")
    html = client.get(f"/projects/{project.id}/review/").content.decode()
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title == "Review · Titled · Stepmark"
    assert html.count("Accuracy on hidden gold items") == 1
