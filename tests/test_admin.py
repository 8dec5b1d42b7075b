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
from annotation.services.people import invitation_create
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
    invitation_create(project=project, role="annotator", created_by=annotator)
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


# --- edits in the admin keep the queue true (explicit service calls, no signals) ---------------


def _queue_flags(project) -> dict[str, tuple[int, bool]]:
    from annotation.models import Solution

    return {s.key: (s.slots_taken, s.queue_open) for s in Solution.objects.filter(project=project)}


def _project_form(project, **changes) -> dict:
    data = {
        "name": project.name, "guidelines": project.guidelines, "overlap": project.overlap,
        "label_mode": project.label_mode, "gold_rate": project.gold_rate,
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000", "_save": "Save",
        **({"show_reference_answer": "on"} if project.show_reference_answer else {}),
    }
    return {**data, **changes}


def test_editing_the_overlap_in_the_admin_reopens_and_closes_the_queue(superuser_client, make_user):
    from annotation.services.queue import next_assignment

    project = Project.objects.create(name="overlap edit", overlap=1)
    make_solution(project, "q1", ["a"], key="s")
    assert next_assignment(project=project, annotator=make_user("first")) is not None
    assert _queue_flags(project) == {"s": (1, False)}
    change = reverse("admin:annotation_project_change", args=[project.id])

    response = superuser_client.post(change, _project_form(project, overlap=2))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert _queue_flags(project) == {"s": (1, True)}, "a second annotator may now have it"
    project.refresh_from_db()
    assert next_assignment(project=project, annotator=make_user("second")).solution.key == "s"

    assert superuser_client.post(change, _project_form(project, overlap=1)).status_code == 302
    assert _queue_flags(project) == {"s": (2, False)}


def test_moving_an_item_in_the_admin_takes_its_solutions_along(superuser_client, make_user):
    from annotation.models import Item, Solution

    home, away = Project.objects.create(name="home", overlap=2), Project.objects.create(name="away", overlap=1)
    item = Item.objects.create(project=home, external_id="i1", question="?")
    solution = Solution.objects.create(item=item, key="s", response="")
    Assignment.objects.create(solution=solution, annotator=make_user("holder"))
    Solution.objects.filter(pk=solution.pk).update(slots_taken=1)
    data = {
        "project": away.id, "external_id": "i1", "question": "?", "options": "[]", "answer": "",
        "data_source": "", "metadata": "{}", "_save": "Save",
        "item_images-TOTAL_FORMS": "0", "item_images-INITIAL_FORMS": "0",
        "item_images-MIN_NUM_FORMS": "0", "item_images-MAX_NUM_FORMS": "1000",
    }
    response = superuser_client.post(reverse("admin:annotation_item_change", args=[item.id]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    solution.refresh_from_db()
    assert (solution.project_id, solution.slots_taken, solution.queue_open) == (away.id, 1, False)


def test_deleting_assignments_or_people_in_the_admin_gives_their_slots_back(superuser_client, make_user):
    from django.contrib.auth import get_user_model

    from annotation.services.queue import next_assignment

    project = Project.objects.create(name="deletes", overlap=1)
    for key in ("a", "b", "c"):
        make_solution(project, f"q-{key}", ["x"], key=key)
    users = [make_user(f"u{i}") for i in range(3)]
    taken = {user.username: next_assignment(project=project, annotator=user) for user in users}
    assert all(flags == (1, False) for flags in _queue_flags(project).values())

    one = taken["u0"]
    response = superuser_client.post(reverse("admin:annotation_assignment_delete", args=[one.id]), {"post": "yes"})
    assert response.status_code == 302 and not Assignment.objects.filter(pk=one.id).exists()
    assert _queue_flags(project)[one.solution.key] == (0, True)

    two = taken["u1"]
    response = superuser_client.post(
        reverse("admin:annotation_assignment_changelist"),
        {"action": "delete_selected", "_selected_action": [two.id], "post": "yes"},
    )
    assert response.status_code == 302 and _queue_flags(project)[two.solution.key] == (0, True)

    three = taken["u2"]
    response = superuser_client.post(reverse("admin:auth_user_delete", args=[users[2].id]), {"post": "yes"})
    assert response.status_code == 302 and not get_user_model().objects.filter(pk=users[2].id).exists()
    assert _queue_flags(project)[three.solution.key] == (0, True)
