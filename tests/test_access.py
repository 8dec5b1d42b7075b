"""Access and what a member sees: one rule for the page and the API, checked through the solution's project."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.access import (
    assignment_for_member,
    project_for_admin,
    project_for_member,
    project_for_reviewer,
    project_role,
    sees_reference_answer,
)
from annotation.labelling_reads import labelling_screen
from annotation.models import Assignment, AutoLabel, HumanLabel, Project, Role, Solution
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


@pytest.fixture
def hidden_answer(make_user):
    """A project that hides the reference answer (and hints) from annotators; a reviewer and an annotator
    each hold an assignment of its one solution."""
    project = Project.objects.create(name="hidden", overlap=2, show_reference_answer=False)
    solution = make_solution(project, "q1", ["We add.", "So it is 5."])
    AutoLabel.objects.create(step=solution.steps.get(index=1), kind="prm", source="prm-v1", score=0.75)
    people = {}
    for name, role in (("rev", Role.REVIEWER), ("ann", Role.ANNOTATOR)):
        user = people[name] = make_user(name)
        add_member(project, user, role)
        people[f"{name}_assignment"] = Assignment.objects.create(solution=solution, annotator=user)
    return project, solution, people


def _page(user, project, assignment) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("label", args=[project.id, assignment.id]))
    assert response.status_code == 200
    return response.content.decode()


def _api_solution(user, project, solution) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(reverse("api:project-solution", kwargs={"project_id": project.id, "solution_id": solution.id}))
    assert response.status_code == 200, response.content
    return response.json()


def test_page_and_api_show_the_reference_answer_by_the_same_rule(hidden_answer):
    project, solution, people = hidden_answer
    # A reviewer always sees the reference answer: on the page as in the API.
    assert "Reference answer" in _page(people["rev"], project, people["rev_assignment"])
    assert _api_solution(people["rev"], project, solution)["item"]["answer"] == "5"
    # An annotator sees it in neither while the project hides it.
    assert "Reference answer" not in _page(people["ann"], project, people["ann_assignment"])
    assert _api_solution(people["ann"], project, solution)["item"]["answer"] is None

    project.show_reference_answer = True
    project.save()
    assert "Reference answer" in _page(people["ann"], project, people["ann_assignment"])
    assert _api_solution(people["ann"], project, solution)["item"]["answer"] == "5"


def test_page_and_api_show_the_same_steps_labels_and_hints(hidden_answer):
    project, solution, people = hidden_answer
    first, second = solution.steps.order_by("index")
    HumanLabel.objects.create(step=first, annotator=people["rev"], value=-1)
    HumanLabel.objects.create(step=second, annotator=people["ann"], value=1)  # not the reviewer's

    api = _api_solution(people["rev"], project, solution)
    assert [(s["index"], s["value"]) for s in api["steps"]] == [(0, -1), (1, None)]
    assert api["steps"][1]["hints"] == {"prm": {"score": 0.75, "source": "prm-v1"}}
    page = _page(people["rev"], project, people["rev_assignment"])
    assert "PRM 0.75" in page and 'data-value="-1"' in page and "1 / 2 labelled" in page

    annotator = _api_solution(people["ann"], project, solution)
    assert [(s["value"], s["hints"]) for s in annotator["steps"]] == [(None, None), (1, None)]
    assert "PRM 0.75" not in _page(people["ann"], project, people["ann_assignment"])


def test_the_screen_is_read_in_one_query(hidden_answer, django_assert_num_queries):
    project, solution, people = hidden_answer
    assignment = assignment_for_member(people["rev"], project.id, people["rev_assignment"].id)
    with django_assert_num_queries(1):  # the images, the steps with their hints and my labels, the missing ones
        screen = labelling_screen(user=people["rev"], project=assignment.solution.project, solution=assignment.solution)
    assert screen.answer == "5" and screen.sees_hints and [s["text"] for s in screen.steps] == ["We add.", "So it is 5."]


def test_loaders_read_the_project_and_role_in_one_query(hidden_answer, django_assert_num_queries):
    project, solution, people = hidden_answer
    with django_assert_num_queries(1):
        loaded = project_for_member(people["rev"], project.id)
        assert project_role(people["rev"], loaded) == Role.REVIEWER and sees_reference_answer(people["rev"], loaded)
    with django_assert_num_queries(1):
        mine = assignment_for_member(people["ann"], project.id, people["ann_assignment"].id)
        assert mine.solution.item.project.name == "hidden" and mine.solution.item.question == "What is 2+3?"
        assert project_role(people["ann"], mine.solution.project) == Role.ANNOTATOR
        assert not sees_reference_answer(people["ann"], mine.solution.item.project)


def test_access_goes_through_the_solutions_own_project(hidden_answer, make_user):
    project, solution, people = hidden_answer
    elsewhere = Project.objects.create(name="elsewhere")
    add_member(elsewhere, people["ann"], Role.ANNOTATOR)
    # The queue, the label save and access all follow Solution.project; the item's link is not consulted.
    Solution.objects.filter(pk=solution.pk).update(project=elsewhere)
    moved = assignment_for_member(people["ann"], elsewhere.id, people["ann_assignment"].id)
    assert moved.solution.project == elsewhere
    with pytest.raises(Http404):
        assignment_for_member(people["ann"], project.id, people["ann_assignment"].id)


def test_roles_outsiders_get_404_members_without_the_role_403(hidden_answer, make_user):
    project, _, people = hidden_answer
    outsider, staff = make_user("mallory"), make_user("boss", staff=True)
    for check in (project_for_member, project_for_reviewer, project_for_admin):
        with pytest.raises(Http404):
            check(outsider, project.id)
        assert check(staff, project.id) == project
    with pytest.raises(PermissionDenied):
        project_for_reviewer(people["ann"], project.id)
    with pytest.raises(PermissionDenied):
        project_for_admin(people["rev"], project.id)
    assert project_for_reviewer(people["rev"], project.id) == project
    with pytest.raises(Http404):
        assignment_for_member(people["rev"], project.id, people["ann_assignment"].id)  # another member's

    client = Client()
    client.force_login(people["ann"])
    assert client.get(reverse("review-list", args=[project.id])).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("review-list", args=[project.id])).status_code == 404
