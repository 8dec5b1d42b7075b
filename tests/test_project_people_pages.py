"""Project creation, settings, members and invitations through Stepmark's own pages (Django's
test client on the real database): who may do what, the rules the services keep, and that a
refused request changes nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, HumanLabel, Invitation, Membership, Project, Role
from annotation.services.people import (
    PeopleError,
    invitation_create,
    membership_remove,
    membership_role_set,
)
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _grant_add_project(user) -> None:
    user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotation"))


@pytest.fixture
def team(make_user):
    """A project with an admin, a reviewer and an annotator; another project with its own admin; an
    outsider; a staff user who belongs to neither."""
    project = Project.objects.create(name="Geometry", guidelines="Judge each step.", overlap=1)
    other = Project.objects.create(name="Other")
    people = {
        "admin": make_user("boss"),
        "reviewer": make_user("rev"),
        "annotator": make_user("ann"),
        "other_admin": make_user("otheradmin"),
        "outsider": make_user("outsider"),
        "staff": make_user("staffer", staff=True),
    }
    add_member(project, people["admin"], Role.ADMIN)
    add_member(project, people["reviewer"], Role.REVIEWER)
    add_member(project, people["annotator"], Role.ANNOTATOR)
    add_member(other, people["other_admin"], Role.ADMIN)
    return project, other, people


def _state(project: Project) -> tuple:
    """Everything the pages could change, to show a refused request changed none of it."""
    project = Project.objects.get(pk=project.pk)
    return (
        tuple(getattr(project, f.attname) for f in Project._meta.concrete_fields),
        tuple(Membership.objects.filter(project=project).order_by("pk").values_list("pk", "user_id", "role")),
        tuple(Invitation.objects.filter(project=project).order_by("pk").values_list("pk", "role", "revoked_at", "accepted_at")),
        Project.objects.count(),
        get_user_model().objects.count(),
        len(mail.outbox),
    )


def _endpoints(project: Project, people) -> list[tuple[str, str, dict]]:
    ann = Membership.objects.get(project=project, user=people["annotator"])
    invitation = invitation_create(project=project, role=Role.ANNOTATOR, created_by=people["admin"]).invitation
    settings_post = {"name": "Hijacked", "guidelines": "x", "label_mode": "all_steps", "overlap": 3, "gold_rate": 0.5,
                     "max_steps": "", "show_reference_answer": "on"}
    return [
        ("get", reverse("project-settings", args=[project.id]), {}),
        ("post", reverse("project-settings", args=[project.id]), settings_post),
        ("post", reverse("project-guidelines-preview", args=[project.id]), {"guidelines": "# Secret"}),
        ("get", reverse("project-members", args=[project.id]), {}),
        ("post", reverse("member-add", args=[project.id]), {"user": "outsider", "role": "admin"}),
        ("post", reverse("member-role", args=[project.id, ann.id]), {"role": "admin"}),
        ("post", reverse("member-remove", args=[project.id, ann.id]), {}),
        ("post", reverse("invitation-create", args=[project.id]), {"role": "admin", "email": "x@example.com", "days": 7}),
        ("post", reverse("invitation-revoke", args=[project.id, invitation.id]), {}),
    ]


@pytest.mark.parametrize(
    "who, expected",
    [("anonymous", 302), ("outsider", 404), ("other_admin", 404), ("annotator", 403), ("reviewer", 403)],
)
def test_every_project_admin_page_refuses_and_changes_nothing(team, who, expected):
    project, _, people = team
    endpoints = _endpoints(project, people)
    client = _client(None if who == "anonymous" else people[who])
    before = _state(project)
    for method, url, data in endpoints:
        response = getattr(client, method)(url, data)
        assert response.status_code == expected, (who, method, url, response.status_code)
        if expected == 302:
            assert response["Location"].startswith(reverse("login"))
        assert b"Secret" not in response.content and b"Geometry" not in response.content
    assert _state(project) == before


@pytest.mark.parametrize("who", ["admin", "staff"])
def test_the_project_admin_and_staff_may_use_every_page(team, who):
    project, _, people = team
    client = _client(people[who])
    for method, url, data in _endpoints(project, people):
        response = getattr(client, method)(url, data)
        assert response.status_code in (200, 302), (method, url, response.status_code, response.content[:300])
    project.refresh_from_db()
    assert (project.name, project.overlap, project.gold_rate) == ("Hijacked", 3, 0.5)
    assert Membership.objects.filter(project=project, user=people["outsider"]).exists()
    assert not Membership.objects.filter(project=project, user=people["annotator"]).exists()  # removed last
    assert Invitation.objects.filter(project=project, role="admin", email="x@example.com").count() == 1
    assert Invitation.objects.filter(project=project, revoked_at__isnull=False).count() == 1
    assert [m.to for m in mail.outbox] == [["x@example.com"]]


# --- creating a project ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "outsider", "annotator", "reviewer", "admin", "other_admin"])
def test_creating_a_project_needs_staff_or_the_permission(team, who):
    _, _, people = team
    client = _client(None if who == "anonymous" else people[who])
    count = Project.objects.count()
    home = client.get(reverse("home"))
    if who != "anonymous":
        assert b'id="new-project"' not in home.content
    for response in (client.get(reverse("project-create")), client.post(reverse("project-create"), {"name": "Mine", "label_mode": "all_steps", "overlap": 1})):
        assert response.status_code == (302 if who == "anonymous" else 403)
    assert Project.objects.count() == count and not Project.objects.filter(name="Mine").exists()


@pytest.mark.parametrize("who", ["staff", "granted"])
def test_staff_and_people_with_the_permission_create_a_project_and_become_its_admin(team, who, make_user):
    _, _, people = team
    user = people["staff"] if who == "staff" else make_user("lead")
    if who == "granted":
        _grant_add_project(user)
    client = _client(user)
    assert b'id="new-project"' in client.get(reverse("home")).content
    response = client.post(reverse("project-create"), {"name": "Charts", "label_mode": "first_error", "overlap": 2, "guidelines": "Hi"})
    project = Project.objects.get(name="Charts")
    assert response.status_code == 302 and response["Location"] == reverse("project-settings", args=[project.id])
    assert (project.label_mode, project.overlap, project.guidelines) == ("first_error", 2, "Hi")
    assert list(project.memberships.values_list("user_id", "role")) == [(user.id, "admin")]
    assert b"Charts" in client.get(reverse("home")).content


def test_a_bad_new_project_is_shown_with_its_errors_and_nothing_is_made(team, make_user):
    _, _, people = team
    count = Project.objects.count()
    response = _client(people["staff"]).post(reverse("project-create"), {"name": "Geometry", "label_mode": "all_steps", "overlap": 0})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Project with this Name already exists." in body and "Overlap must be a whole number from 1 to 50." in body
    assert Project.objects.count() == count


def test_staff_see_every_project_on_their_home_page_and_members_only_theirs(team):
    project, other, people = team
    staff_home = _client(people["staff"]).get(reverse("home")).content.decode()
    assert "Geometry" in staff_home and "Other" in staff_home and "staff (not a member)" in staff_home
    assert reverse("project-settings", args=[other.id]) in staff_home
    annotator_home = _client(people["annotator"]).get(reverse("home")).content.decode()
    assert "Geometry" in annotator_home and "Other" not in annotator_home
    assert reverse("project-settings", args=[project.id]) not in annotator_home
    admin_home = _client(people["admin"]).get(reverse("home")).content.decode()
    assert reverse("project-settings", args=[project.id]) in admin_home
    assert reverse("project-members", args=[project.id]) in admin_home


# --- settings -------------------------------------------------------------------------------------


def test_settings_save_every_field_and_refuse_bad_values_field_by_field(team):
    project, _, people = team
    client = _client(people["admin"])
    url = reverse("project-settings", args=[project.id])
    page = client.get(url).content.decode()
    for name in ("name", "guidelines", "label_mode", "overlap", "gold_rate", "max_steps", "show_machine_labels", "show_reference_answer"):
        assert f'name="{name}"' in page, name
    before = _state(project)
    bad = {"name": "", "guidelines": "g", "label_mode": "nonsense", "overlap": 0, "gold_rate": 1.5, "max_steps": 0}
    response = client.post(url, bad)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert "This field is required." in body  # the name
    assert "Select a valid choice. nonsense is not one of the available choices." in body
    assert "Overlap must be a whole number from 1 to 50." in body
    assert "The gold-check rate is a share: a number from 0 to 1" in body
    assert "Max steps must be from 1 to 200" in body
    assert "<h1>Settings · Geometry</h1>" in body  # the page shows the project as stored
    assert _state(project) == before

    good = {"name": "Geometry v2", "guidelines": "# New", "label_mode": "first_error", "overlap": 2, "gold_rate": 0.1,
            "max_steps": 8, "show_machine_labels": "on"}
    assert client.post(url, good).status_code == 302
    project.refresh_from_db()
    assert (project.name, project.guidelines, project.label_mode, project.overlap, project.gold_rate, project.max_steps,
            project.show_machine_labels, project.show_reference_answer) == ("Geometry v2", "# New", "first_error", 2, 0.1, 8, True, False)
    assert "Settings saved." in client.get(url).content.decode()


def test_a_raised_overlap_reopens_solutions_in_the_queue(team):
    project, _, people = team
    solution = make_solution(project, "q1", ["a", "b"])
    Assignment.objects.create(solution=solution, annotator=people["annotator"])
    from annotation.services.queue import solution_slots_recount

    solution_slots_recount(solution_ids=[solution.id])
    solution.refresh_from_db()
    assert solution.queue_open is False
    data = {"name": project.name, "guidelines": "", "label_mode": "all_steps", "overlap": 2, "gold_rate": 0}
    assert _client(people["admin"]).post(reverse("project-settings", args=[project.id]), data).status_code == 302
    solution.refresh_from_db()
    assert solution.queue_open is True


def test_the_preview_renders_markdown_and_removes_scripts(team):
    project, _, people = team
    client = _client(people["admin"])
    text = "# Rules\n**bold** <script>alert(1)</script> <img src=x onerror=alert(2)> [x](javascript:alert(3))"
    html = client.post(reverse("project-guidelines-preview", args=[project.id]), {"guidelines": text}).content.decode()
    assert "<h1>Rules</h1>" in html and "<strong>bold</strong>" in html
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html
    assert 'id="guidelines-preview"' in html
    # Without scripts: the preview button renders the page with the preview and saves nothing.
    before = _state(project)
    page = client.post(reverse("project-settings", args=[project.id]),
                       {"name": "Renamed", "guidelines": "## Draft", "label_mode": "all_steps", "overlap": 1, "gold_rate": 0, "preview": "1"})
    assert page.status_code == 200 and "<h2>Draft</h2>" in page.content.decode()
    assert _state(project) == before


def _steps_per_solution(project: Project) -> list[int]:
    return [s.steps.count() for item in project.items.all() for s in item.solutions.all()]


def test_the_project_step_cap_is_the_default_of_imports_that_split_steps(team, tmp_path):
    from annotation.services.dataset_import import dataset_import
    from tests.mathv_sample import mathv_sample

    project, other, _ = team
    folder = mathv_sample(tmp_path / "mv", questions=3)
    dataset_import(project=other, format_name="mathv", path=folder)  # no cap of its own: the site's (12)
    assert max(_steps_per_solution(other)) > 3
    project.max_steps = 2
    project.save()
    dataset_import(project=project, format_name="mathv", path=folder)
    assert max(_steps_per_solution(project)) == 2
    # An import that names its own cap keeps it.
    third = Project.objects.create(name="third", max_steps=2)
    dataset_import(project=third, format_name="mathv", path=folder, options={"max_steps": 3})
    assert max(_steps_per_solution(third)) == 3


# --- members --------------------------------------------------------------------------------------


def test_add_by_username_or_email_and_clear_refusals(team, make_user):
    project, _, people = team
    client = _client(people["admin"])
    url = reverse("member-add", args=[project.id])
    newcomer = make_user("newcomer")
    newcomer.email = "New.Comer@example.com"
    newcomer.save()
    assert client.post(url, {"user": "new.comer@EXAMPLE.com", "role": "reviewer"}).status_code == 302
    assert Membership.objects.get(project=project, user=newcomer).role == "reviewer"

    before = _state(project)
    for data, message in (
        ({"user": "nobody", "role": "annotator"}, "No one has the username or e-mail address &#x27;nobody&#x27;"),
        ({"user": "ann", "role": "annotator"}, "ann is already a member of this project (as annotator)."),
        ({"user": "outsider", "role": "king"}, "Select a valid choice."),
    ):
        response = client.post(url, data)
        assert response.status_code == 400 and message in response.content.decode(), response.content.decode()[:2000]
    assert _state(project) == before


def test_the_last_admin_can_be_neither_demoted_nor_removed(team):
    project, _, people = team
    client = _client(people["admin"])
    boss = Membership.objects.get(project=project, user=people["admin"])
    before = _state(project)
    for response in (
        client.post(reverse("member-role", args=[project.id, boss.id]), {"role": "annotator"}),
        client.post(reverse("member-remove", args=[project.id, boss.id])),
    ):
        assert response.status_code == 400
        assert "boss is the project&#x27;s only admin: make someone else an admin first." in response.content.decode()
    assert _state(project) == before
    # With a second admin, the first may step down.
    rev = Membership.objects.get(project=project, user=people["reviewer"])
    membership_role_set(project=project, membership_id=rev.id, role=Role.ADMIN)
    membership_role_set(project=project, membership_id=boss.id, role=Role.ANNOTATOR)
    with pytest.raises(PeopleError, match="only admin"):
        membership_remove(project=project, membership_id=rev.id)


def test_a_member_of_another_project_is_not_reachable_through_this_one(team):
    project, other, people = team
    foreign = Membership.objects.get(project=other, user=people["other_admin"])
    client = _client(people["admin"])
    before = _state(other)
    for url, data in ((reverse("member-role", args=[project.id, foreign.id]), {"role": "annotator"}),
                      (reverse("member-remove", args=[project.id, foreign.id]), {})):
        response = client.post(url, data)
        assert response.status_code == 400 and "not a member of this project" in response.content.decode()
    assert _state(other) == before
    invitation = invitation_create(project=other, role=Role.ADMIN, created_by=people["other_admin"]).invitation
    assert client.post(reverse("invitation-revoke", args=[project.id, invitation.id])).status_code == 400
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_removing_a_member_frees_their_open_items_and_keeps_their_labels(team):
    project, _, people = team
    done = make_solution(project, "q1", ["a"])
    open_one = make_solution(project, "q2", ["b"])
    Assignment.objects.create(solution=done, annotator=people["annotator"], status=Assignment.Status.SUBMITTED)
    Assignment.objects.create(solution=open_one, annotator=people["annotator"])
    HumanLabel.objects.create(step=done.steps.get(), annotator=people["annotator"], value=1)
    ann = Membership.objects.get(project=project, user=people["annotator"])
    assert _client(people["admin"]).post(reverse("member-remove", args=[project.id, ann.id])).status_code == 302
    assert list(Assignment.objects.filter(annotator=people["annotator"]).values_list("solution_id", flat=True)) == [done.id]
    assert HumanLabel.objects.filter(annotator=people["annotator"]).count() == 1
    open_one.refresh_from_db()
    assert open_one.slots_taken == 0 and open_one.queue_open
    assert _client(people["annotator"]).get(reverse("dashboard", args=[project.id])).status_code == 404


# --- invitations ----------------------------------------------------------------------------------


def _invite(client, project, **data) -> str:
    response = client.post(reverse("invitation-create", args=[project.id]), {"role": "annotator", "days": 7, **data})
    assert response.status_code == 302
    page = client.get(reverse("project-members", args=[project.id])).content.decode()
    start = page.index('id="invitation-link"')
    link = page[page.index('value="', start - 200) + 7:]
    return link[: link.index('"')]


def test_an_invitation_link_is_shown_once_stored_hashed_and_emailed(team):
    project, _, people = team
    client = _client(people["admin"])
    link = _invite(client, project, email="newbie@example.com", role="reviewer")
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert len(token) >= 40
    invitation = Invitation.objects.get(project=project)
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in invitation.token_hash
    assert abs(invitation.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newbie@example.com"] and link in mail.outbox[0].body
    assert "Geometry" in mail.outbox[0].subject
    # Shown once: the next visit to the members page has no link.
    assert 'id="invitation-link"' not in client.get(reverse("project-members", args=[project.id])).content.decode()
    # Without an address nothing is sent.
    _invite(client, project)
    assert len(mail.outbox) == 1


def test_a_bad_invitation_form_is_refused_with_messages(team):
    project, _, people = team
    before = _state(project)
    response = _client(people["admin"]).post(reverse("invitation-create", args=[project.id]), {"role": "king", "email": "nope", "days": 0})
    body = response.content.decode()
    assert response.status_code == 400
    assert "Enter a valid email address." in body and "Select a valid choice." in body
    assert "Ensure this value is greater than or equal to 1." in body
    assert _state(project) == before


def test_a_new_person_signs_up_from_the_link_and_joins_with_the_role(team):
    project, _, people = team
    link = _invite(_client(people["admin"]), project, email="newbie@example.com", role="reviewer")
    visitor = Client()
    page = visitor.get(link)
    assert page.status_code == 200 and "Join Geometry" in page.content.decode()
    users = get_user_model().objects.count()
    # Django's password validators apply; a taken username is refused; nothing is made meanwhile.
    for data, message in (
        ({"username": "newbie", "password1": "12345678", "password2": "12345678"}, "This password is entirely numeric."),
        ({"username": "newbie", "password1": "password", "password2": "password"}, "This password is too common."),
        ({"username": "newbie", "password1": "Tr1cky-Horse-9", "password2": "other-Horse-9"}, "The two passwords differ."),
        ({"username": "ANN", "password1": "Tr1cky-Horse-9", "password2": "Tr1cky-Horse-9"}, "The username ANN is taken"),
        ({"username": "bad name!", "password1": "Tr1cky-Horse-9", "password2": "Tr1cky-Horse-9"}, "Enter a valid username."),
    ):
        response = visitor.post(link, data)
        assert response.status_code == 400 and message in response.content.decode(), message
    assert get_user_model().objects.count() == users and Invitation.objects.get().accepted_at is None

    response = visitor.post(link, {"username": "newbie", "password1": "Tr1cky-Horse-9", "password2": "Tr1cky-Horse-9"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    newbie = get_user_model().objects.get(username="newbie")
    assert newbie.email == "newbie@example.com" and newbie.check_password("Tr1cky-Horse-9")
    assert Membership.objects.get(project=project, user=newbie).role == "reviewer"
    invitation = Invitation.objects.get()
    assert invitation.accepted_by == newbie and invitation.accepted_at is not None
    home = visitor.get(reverse("home")).content.decode()  # logged in as the new person
    assert "Welcome, newbie: you joined Geometry as reviewer." in home and "Log out newbie" in home
    # The link is used up: a clear page, not a 404 page, and no second account.
    again = Client().post(link, {"username": "second", "password1": "Tr1cky-Horse-9", "password2": "Tr1cky-Horse-9"})
    assert again.status_code == 410 and "was used already" in again.content.decode()
    assert not get_user_model().objects.filter(username="second").exists()


def test_a_signed_in_person_accepts_and_a_member_is_refused(team):
    project, _, people = team
    admin = _client(people["admin"])
    link = _invite(admin, project, role="annotator")
    member = _client(people["annotator"])
    response = member.post(link)
    assert response.status_code == 400 and "You are a member of Geometry already." in response.content.decode()
    assert Invitation.objects.get().accepted_at is None
    outsider = _client(people["outsider"])
    assert "Join as outsider" in outsider.get(link).content.decode()
    assert outsider.post(link).status_code == 302
    assert Membership.objects.get(project=project, user=people["outsider"]).role == "annotator"
    assert outsider.get(reverse("dashboard", args=[project.id])).status_code == 403  # a member now, not a reviewer


@pytest.mark.parametrize("state", ["revoked", "expired", "used", "unknown"])
def test_dead_links_show_a_clear_refusal_and_change_nothing(team, state, make_user):
    project, _, people = team
    new = invitation_create(project=project, role=Role.ADMIN, created_by=people["admin"])
    token = new.token
    if state == "revoked":
        assert _client(people["admin"]).post(reverse("invitation-revoke", args=[project.id, new.invitation.id])).status_code == 302
    elif state == "expired":
        Invitation.objects.filter(pk=new.invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "used":
        Invitation.objects.filter(pk=new.invitation.pk).update(accepted_at=timezone.now())
    else:
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    before = _state(project)
    link = reverse("invitation", args=[token])
    expected = {"revoked": "revoked by the project", "expired": "has expired", "used": "was used already",
                "unknown": "is not valid"}[state]
    for client in (Client(), _client(people["outsider"])):
        for response in (client.get(link), client.post(link, {"username": "sneak", "password1": "Tr1cky-Horse-9", "password2": "Tr1cky-Horse-9"})):
            assert response.status_code == (404 if state == "unknown" else 410)
            body = response.content.decode()
            assert "Invitation not valid" in body and expected in body and "Geometry" not in body
    assert _state(project) == before
    assert not Membership.objects.filter(project=project, user=people["outsider"]).exists()


def test_everyone_changes_their_own_password(team):
    _, _, people = team
    client = _client(people["annotator"])
    page = client.get(reverse("password_change"))
    assert page.status_code == 200 and 'id="password-change-form"' in page.content.decode()
    assert reverse("password_change") in client.get(reverse("home")).content.decode()  # linked from the header
    wrong = client.post(reverse("password_change"), {"old_password": "nope", "new_password1": "Tr1cky-Horse-9", "new_password2": "Tr1cky-Horse-9"})
    assert wrong.status_code == 200 and "Your old password was entered incorrectly" in wrong.content.decode()
    weak = client.post(reverse("password_change"), {"old_password": "pw-ann", "new_password1": "123", "new_password2": "123"})
    assert "This password is too short" in weak.content.decode()
    people["annotator"].refresh_from_db()
    assert people["annotator"].check_password("pw-ann")
    done = client.post(reverse("password_change"), {"old_password": "pw-ann", "new_password1": "Tr1cky-Horse-9", "new_password2": "Tr1cky-Horse-9"})
    assert done.status_code == 302
    people["annotator"].refresh_from_db()
    assert people["annotator"].check_password("Tr1cky-Horse-9")
    assert Client().get(reverse("password_change")).status_code == 302  # anonymous: to the login page


@pytest.mark.django_db(transaction=True)
def test_two_people_racing_for_one_link_make_one_account(make_user):
    """The invitation row is locked while it is used: of two sign-ups at once, one joins, one is refused."""
    import threading

    from django.db import connection

    from annotation.services.people import InvitationRefused, invitation_accept_new_user

    project = Project.objects.create(name="Race")
    boss = make_user("boss")
    add_member(project, boss, Role.ADMIN)
    token = invitation_create(project=project, role=Role.ANNOTATOR, created_by=boss).token
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def sign_up(name: str) -> None:
        try:
            barrier.wait()
            invitation_accept_new_user(token=token, username=name, password="Tr1cky-Horse-9")
            outcomes.append("joined")
        except InvitationRefused as refusal:
            outcomes.append(refusal.reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["joined", "used"]
    assert get_user_model().objects.filter(username__in=["first", "second"]).count() == 1
    assert Membership.objects.filter(project=project, role=Role.ANNOTATOR).count() == 1


def test_settings_edit_error_categories_one_per_line_and_the_judge_prompt(team):
    project, _, people = team
    client = _client(people["admin"])
    url = reverse("project-settings", args=[project.id])
    page = client.get(url).content.decode()
    assert 'name="error_categories_enabled"' in page and 'name="judge_prompt"' in page
    assert "visual perception\nreasoning" in page  # the default list, one per line
    base = {"name": project.name, "guidelines": "", "label_mode": "all_steps", "overlap": 1, "gold_rate": 0}
    before = _state(project)
    refused = [
        ({"error_categories_enabled": "on", "error_categories": "\n \n"}, "List at least one category"),
        ({"error_categories": "reasoning\nreasoning"}, "reasoning"),
        ({"judge_prompt": "Judge this."}, "The prompt must contain {question}"),
    ]
    for extra, message in refused:
        response = client.post(url, base | extra)
        assert response.status_code == 400 and message in response.content.decode(), extra
        assert _state(project) == before, extra
    prompt = "Question: {question}\nSteps:\n{steps}\nAnswer in JSON."
    saved = client.post(url, base | {"error_categories_enabled": "on", "error_categories": " reading the figure \ncalculation\nother\n",
                                     "judge_prompt": prompt})
    assert saved.status_code == 302
    project.refresh_from_db()
    assert project.error_categories_enabled and project.error_categories == ["reading the figure", "calculation", "other"]
    assert project.offered_error_categories == ["reading the figure", "calculation", "other"]
    assert project.judge_prompt == prompt
