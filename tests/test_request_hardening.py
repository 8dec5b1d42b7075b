"""Small request-level holes of issue 15 (item 6): ids past bigint, echoed label values, state change on GET."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Assignment, HumanLabel, Project, Role
from annotation.services.queue import next_assignment
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db

PAST_BIGINT = str(2**63)
FAR_PAST = "9" * 20


@pytest.fixture
def labelling(make_user, client):
    project = Project.objects.create(name="Hardening", overlap=1)
    solution = make_solution(project, "q1", ["One.", "Two."])
    make_solution(project, "q2", ["Three."], color=(1, 2, 3))
    annotator = make_user("ann")
    add_member(project, annotator, Role.ANNOTATOR)
    client.force_login(annotator)
    return project, solution, annotator, client


@pytest.mark.parametrize("huge", [PAST_BIGINT, FAR_PAST])
def test_ids_past_bigint_are_404_on_pages_and_the_api(labelling, huge):
    project, solution, annotator, client = labelling
    assignment = next_assignment(project=project, annotator=annotator)
    step = solution.steps.first()
    base = f"/projects/{project.id}/assignments/{assignment.id}"
    assert client.post(f"{base}/steps/{huge}/label/", {"value": "1"}).status_code == 404
    assert client.get(f"/projects/{project.id}/assignments/{huge}/").status_code == 404
    assert client.get(f"/projects/{huge}/next/").status_code == 404
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    api_base = f"/api/projects/{project.id}/assignments/{assignment.id}"
    assert api.put(f"{api_base}/steps/{huge}/label/", {"value": 1}, format="json").status_code == 404
    assert api.get(f"/api/projects/{huge}/").status_code == 404
    assert api.get(f"/api/projects/{project.id}/solutions/{huge}/").status_code == 404
    # The largest bigint itself is a well-formed id that names nothing.
    assert client.post(f"{base}/steps/{2**63 - 1}/label/", {"value": "1"}).status_code == 404
    assert not HumanLabel.objects.exists()
    assert client.post(f"{base}/steps/{step.id}/label/", {"value": "1"}).status_code == 302  # the control


def test_an_invalid_label_value_is_never_echoed_as_html(labelling):
    project, solution, annotator, client = labelling
    assignment = next_assignment(project=project, annotator=annotator)
    step = solution.steps.first()
    payload = "<script>alert(1)</script>"
    response = client.post(
        f"/projects/{project.id}/assignments/{assignment.id}/steps/{step.id}/label/", {"value": payload}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert not HumanLabel.objects.exists()


def test_get_next_never_takes_an_item(labelling):
    project, solution, annotator, client = labelling
    response = client.get(f"/projects/{project.id}/next/")
    assert response.status_code == 200
    assert b'id="take-next"' in response.content and b"csrfmiddlewaretoken" in response.content
    assert not Assignment.objects.exists()
    # Taking one is a POST; GET then shows that same open item, still taking nothing.
    taken = client.post(f"/projects/{project.id}/next/")
    assignment = Assignment.objects.get()
    assert taken.status_code == 302 and taken["Location"] == f"/projects/{project.id}/assignments/{assignment.id}/"
    again = client.get(f"/projects/{project.id}/next/")
    assert again.status_code == 302 and again["Location"] == taken["Location"]
    assert Assignment.objects.count() == 1


def test_a_cross_site_post_to_next_is_refused(labelling):
    from django.test import Client

    project, _, annotator, _ = labelling
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(annotator)
    assert csrf_client.post(f"/projects/{project.id}/next/").status_code == 403
    assert not Assignment.objects.exists()


def test_submitting_goes_straight_on_to_the_next_item(labelling):
    project, solution, annotator, client = labelling
    client.post(f"/projects/{project.id}/next/")
    first = Assignment.objects.get()
    for step in first.solution.steps.all():
        client.post(f"/projects/{project.id}/assignments/{first.id}/steps/{step.id}/label/", {"value": "1"})
    response = client.post(f"/projects/{project.id}/assignments/{first.id}/submit/")
    second = Assignment.objects.exclude(pk=first.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.id}/assignments/{second.id}/"
