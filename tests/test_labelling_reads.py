"""The reads behind the labelling screen, next item and submit: fields decoded, access checked, hints shaped."""

import pytest
from django.http import Http404
from django.urls import reverse

from annotation.access import assignment_for_member, project_for_member, project_role
from annotation.labelling_reads import (
    assignment_labels,
    assignment_with_work,
    item_images,
    labelling_screen,
)
from annotation.models import Assignment, AutoLabel, HumanLabel, Item, LabelMode, Project, Role
from annotation.services.labels import step_label_set
from annotation.services.statements import labelling_screen_statement
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


@pytest.fixture
def work(make_user):
    project = Project.objects.create(name="reads", overlap=1, guidelines="Be careful.")
    solution = make_solution(project, "q1", ["first", "second", "third"])
    item = solution.item
    item.options = ["A) 1", "B) 2"]
    item.metadata = {"subject": "geometry"}
    item.save()
    alice = make_user("alice")
    add_member(project, alice, Role.REVIEWER)
    assignment = Assignment.objects.create(solution=solution, annotator=alice)
    return project, solution, alice, assignment


def test_project_and_assignment_loaders_decode_fields_and_check_access(work, make_user):
    project, solution, alice, assignment = work
    loaded = project_for_member(alice, project.id)
    assert (loaded.id, loaded.guidelines, loaded.overlap) == (project.id, "Be careful.", 1)
    assert project_role(alice, loaded) == Role.REVIEWER

    mine = assignment_for_member(alice, project.id, assignment.id)
    assert mine.solution.item.options == ["A) 1", "B) 2"], "JSON fields must come back decoded"
    assert mine.solution.item.metadata == {"subject": "geometry"}
    assert mine.solution.item.project.name == "reads" and mine.status == Assignment.Status.ASSIGNED
    assert mine.created_at == assignment.created_at

    outsider, other_member = make_user("mallory"), make_user("bob")
    add_member(project, other_member, Role.ANNOTATOR)
    other_project = Project.objects.create(name="elsewhere")
    for user, project_id in ((outsider, project.id), (other_member, project.id), (alice, other_project.id)):
        with pytest.raises(Http404):
            assignment_for_member(user, project_id, assignment.id)
    with pytest.raises(Http404):
        project_for_member(outsider, project.id)


def test_steps_hints_images_and_labels(work, make_user):
    project, solution, alice, assignment = work
    steps = list(solution.steps.order_by("index"))
    AutoLabel.objects.create(step=steps[1], kind="mc", source="mc-8", score=0.5, num_correct=4, num_total=8)
    AutoLabel.objects.create(step=steps[1], kind="mc", source="mc-16", score=0.25, num_correct=4, num_total=16)
    AutoLabel.objects.create(step=steps[1], kind="prm", source="prm-v1", score=0.8)
    AutoLabel.objects.create(step=steps[2], kind="imported", source="dataset", score=1.0)

    def screen(**kw):
        args = {"solution_id": solution.id, "item_id": solution.item_id, "annotator_id": alice.id,
                "label_mode": LabelMode.ALL_STEPS, "with_hints": True} | kw
        return labelling_screen_statement(**args)

    shown = screen().steps
    assert [s["text"] for s in shown] == ["first", "second", "third"]
    assert shown[1]["hints"] == {
        "mc": {"score": 0.25, "right": 4, "total": 16, "source": "mc-16"},  # the latest of a kind
        "prm": {"score": 0.8, "source": "prm-v1"},
    }
    assert shown[0]["hints"] == {} and shown[2]["hints"] == {}, "imported labels are not hints"
    assert all(s["hints"] is None for s in screen(with_hints=False).steps)

    ((position, sha256, width, height),) = screen().images
    link = Item.objects.get(pk=solution.item_id).item_images.get()
    assert (position, sha256, width, height) == (0, link.image.sha256, link.image.width, link.image.height)
    assert item_images(item_id=solution.item_id) == screen().images
    assert screen(item_id=None).images == []

    step_label_set(step_id=steps[0].id, annotator_id=alice.id, value=-1)
    mine = screen()
    assert [s["value"] for s in mine.steps] == [-1, None, None] and mine.steps[1]["hints"] == shown[1]["hints"]
    assert mine.missing_step_ids == [steps[1].id, steps[2].id]
    assert screen(label_mode=LabelMode.FIRST_ERROR).missing_step_ids == [], "nothing after the first error is required"
    bob = make_user("bob")
    assert [s["value"] for s in screen(annotator_id=bob.id).steps] == [None, None, None], "only the annotator's own labels"

    loaded = assignment_with_work(assignment_id=assignment.id, project=project, annotator=alice)
    assert assignment_labels(assignment=assignment_for_member(alice, project.id, assignment.id)) == (
        [(steps[0].id, 0, -1, "", ""), (steps[1].id, 1, None, "", ""), (steps[2].id, 2, None, "", "")],
        [steps[1].id, steps[2].id],
    )
    assert loaded.solution.item.options == ["A) 1", "B) 2"] and loaded.solution.item.project is project

    page = labelling_screen(user=alice, project=project, solution=loaded.solution)  # a reviewer: hints shown
    assert page.sees_hints and page.steps == mine.steps and page.missing_step_ids == mine.missing_step_ids
    assert page.labelled == 1


def test_the_page_after_a_form_save_shows_the_value_and_the_hints_recorded(work, client):
    project, solution, alice, assignment = work
    step = solution.steps.order_by("index")[1]
    AutoLabel.objects.create(step=step, kind="mc", source="mc-16", score=0.5, num_correct=8, num_total=16)
    client.force_login(alice)  # a reviewer: always sees machine hints
    url = reverse("label-step", args=[project.id, assignment.id, step.id])
    response = client.post(url, {"value": "-1"}, follow=True)  # the form without JavaScript
    assert response.status_code == 200 and response.redirect_chain
    html = response.content.decode()
    assert f'id="step-{step.id}"' in html and 'data-value="-1"' in html and "is-incorrect" in html
    assert "MC 0.50 (8/16)" in html and "second" in html
    assert HumanLabel.objects.get(step=step, annotator=alice).shown_hints["mc"]["right"] == 8
