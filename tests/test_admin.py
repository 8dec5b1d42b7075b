"""The Django admin: every annotation model has a working changelist; projects export from it."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.http import StreamingHttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from annotation.admin import ProjectAdmin
from annotation.models import (
    Assignment,
    AutoLabel,
    GoldLabel,
    HumanLabel,
    ImportRecord,
    LabelChange,
    Project,
)
from annotation.services.dataset_export import EXPORT_FORMATS
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def superuser_client(make_user):
    client = Client()
    client.force_login(make_user("root", superuser=True))
    return client


@pytest.fixture
def filled(project, make_user):
    """One row in every table, so list and change pages render real objects."""
    annotator = make_user("ann")
    add_member(project, annotator, "annotator")
    solution = make_solution(project, "q1", ["First, count the digits.", "So the answer is 6."])
    first, second = solution.steps.order_by("index")
    HumanLabel.objects.create(step=first, annotator=annotator, value=1)
    GoldLabel.objects.create(step=first, value=1, source=GoldLabel.Source.IMPORTED, origin="test")
    GoldLabel.objects.create(step=second, value=-1, source=GoldLabel.Source.IMPORTED, origin="test")
    AutoLabel.objects.create(step=first, kind=AutoLabel.Kind.MC, source="mc", score=0.5, num_correct=8, num_total=16)
    ImportRecord.objects.create(project=project, format="mathv", source_name="x", status="done")
    Assignment.objects.create(solution=solution, annotator=annotator)
    LabelChange.objects.create(step=first, changed_by=annotator, annotator=annotator, old_value=None, new_value=1)
    return solution


def annotation_models():
    return list(apps.get_app_config("annotation").get_models())


def test_every_annotation_model_is_registered():
    missing = [model.__name__ for model in annotation_models() if not admin.site.is_registered(model)]
    assert missing == []


def test_changelists_and_change_pages_load_for_a_superuser(superuser_client, filled):
    for model in annotation_models():
        meta = model._meta
        changelist = superuser_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert changelist.status_code == 200, meta.model_name
        obj = model.objects.first()
        change = superuser_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
        assert change.status_code == 200, meta.model_name
    searched = superuser_client.get(reverse("admin:annotation_solution_changelist"), {"q": "q1"})
    assert searched.status_code == 200 and searched.context["cl"].result_count == 1


def test_solution_page_shows_its_steps_read_only(superuser_client, filled):
    page = superuser_client.get(reverse("admin:annotation_solution_change", args=[filled.pk]))
    html = page.content.decode()
    assert "First, count the digits." in html
    # Read-only: the step text is shown, not offered as an input.
    assert 'name="steps-0-text"' not in html


def test_project_page_has_its_memberships_inline(superuser_client, filled):
    page = superuser_client.get(reverse("admin:annotation_project_change", args=[filled.item.project_id]))
    assert 'name="memberships-0-role"' in page.content.decode()


def test_export_action_downloads_the_selected_project(superuser_client, filled):
    response = superuser_client.post(
        reverse("admin:annotation_project_changelist"),
        {"action": "export_visualprocessbench", "_selected_action": [filled.item.project_id]},
    )
    assert response.status_code == 200 and isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"].startswith("attachment;")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(rows) == 1 and rows[0]["response"]["process_correctness"] == [1, -1]


def test_export_action_needs_exactly_one_project(superuser_client, filled):
    other = Project.objects.create(name="other")
    response = superuser_client.post(
        reverse("admin:annotation_project_changelist"),
        {"action": "export_visualprocessbench", "_selected_action": [filled.item.project_id, other.pk]},
        follow=True,
    )
    assert not isinstance(response, StreamingHttpResponse)
    assert "Select exactly one project" in response.content.decode()


def test_export_actions_exist_for_staff_only(make_user):
    project_admin = ProjectAdmin(Project, admin.site)
    export_names = {f"export_{name.replace('-', '_')}" for name in EXPORT_FORMATS}
    viewer = make_user("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_project"))
    request = RequestFactory().get("/admin/annotation/project/")
    request.user = type(viewer).objects.get(pk=viewer.pk)  # fresh: permission cache
    assert export_names.isdisjoint(project_admin.get_actions(request))
    viewer.is_staff = True
    viewer.save()
    request.user = type(viewer).objects.get(pk=viewer.pk)
    assert export_names <= set(project_admin.get_actions(request))


def test_admin_is_closed_to_non_staff(make_user):
    client = Client()
    client.force_login(make_user("plain"))
    response = client.get(reverse("admin:annotation_project_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]
