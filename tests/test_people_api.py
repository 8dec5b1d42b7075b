"""/api/projects/<id>/members/ and /api/projects/<id>/invitations/: a project's people over REST, for
admins who script setting up a team. The same services and forms as the members page, on the real
database: who may call what, the last-admin rule, refusals that change nothing, and that a link made
here joins someone through the invitation page."""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import include, path, reverse
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import api_urls
from annotation.models import Assignment, HumanLabel, Invitation, Membership, Project, Role
from annotation.services.people import invitation_create
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "Tr1cky-Horse-9"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Team:
    project: Project
    other: Project
    users: dict = field(default_factory=dict)

    def client(self, who: str) -> APIClient:
        client = APIClient()
        if who != "anonymous":
            client.force_login(self.users[who])
        return client


@pytest.fixture
def team(make_user) -> Team:
    """Geometry with an admin, a reviewer and an annotator; Other with its own admin; an outsider; staff."""
    team = Team(Project.objects.create(name="Geometry"), Project.objects.create(name="Other"))
    for name in ("boss", "rev", "ann", "otheradmin", "outsider"):
        team.users[name] = make_user(name)
    team.users["staff"] = make_user("staffer", staff=True)
    add_member(team.project, team.users["boss"], Role.ADMIN)
    add_member(team.project, team.users["rev"], Role.REVIEWER)
    add_member(team.project, team.users["ann"], Role.ANNOTATOR)
    add_member(team.other, team.users["otheradmin"], Role.ADMIN)
    return team


def members_url(project_id: int, membership_id: int | None = None) -> str:
    if membership_id is None:
        return reverse("api:project-members", kwargs={"project_id": project_id})
    return reverse("api:project-member", kwargs={"project_id": project_id, "membership_id": membership_id})


def invitations_url(project_id: int, invitation_id: int | None = None) -> str:
    if invitation_id is None:
        return reverse("api:project-invitations", kwargs={"project_id": project_id})
    return reverse("api:project-invitation", kwargs={"project_id": project_id, "invitation_id": invitation_id})


def state(*projects: Project) -> tuple:
    """Everything these endpoints could change, to show a refused request changed none of it."""
    return (
        tuple(Membership.objects.filter(project__in=projects).order_by("pk").values_list("pk", "project_id", "user_id", "role")),
        tuple(
            Invitation.objects.filter(project__in=projects)
            .order_by("pk")
            .values_list("pk", "project_id", "role", "email", "expires_at", "revoked_at", "accepted_at")
        ),
        get_user_model().objects.count(),
        Assignment.objects.count(),
        len(mail.outbox),
    )


def membership(team: Team, who: str, project: Project | None = None) -> Membership:
    return Membership.objects.get(project=project or team.project, user=team.users[who])


# --- who may call what ----------------------------------------------------------------------------


def _endpoints(team: Team) -> list[tuple[str, str, dict | None, int]]:
    """Every endpoint and method with a body that would succeed for the project's admin, and its status."""
    project = team.project
    ann = membership(team, "ann")
    invitation = invitation_create(project=project, role=Role.ANNOTATOR, created_by=team.users["boss"]).invitation
    return [
        ("get", members_url(project.id), None, 200),
        ("post", members_url(project.id), {"user": "outsider", "role": "admin"}, 201),
        ("patch", members_url(project.id, ann.id), {"role": "admin"}, 200),
        ("delete", members_url(project.id, ann.id), None, 204),
        ("get", invitations_url(project.id), None, 200),
        ("post", invitations_url(project.id), {"role": "admin", "email": "x@example.com"}, 201),
        ("delete", invitations_url(project.id, invitation.id), None, 204),
    ]


def test_it_validates_ownership(team):
    """Outsiders and another project's admin are told nothing exists (404), members who are not admins
    get 403, the anonymous 401/403, for every endpoint and method; nothing changes. Then the
    project's admin makes each call work: the URLs and bodies themselves are right."""
    endpoints = _endpoints(team)
    before = state(team.project, team.other)
    expected = {"anonymous": (401, 403), "outsider": (404,), "otheradmin": (404,), "ann": (403,), "rev": (403,)}
    for who, codes in expected.items():
        client = team.client(who)
        for method, url, body, _ in endpoints:
            response = getattr(client, method)(url, body, format="json")
            assert response.status_code in codes, (who, method, url, response.status_code, response.content)
            assert b"Geometry" not in response.content and b"boss" not in response.content, (who, method, url)
    assert state(team.project, team.other) == before

    admin = team.client("boss")
    for method, url, body, ok in endpoints:
        response = getattr(admin, method)(url, body, format="json")
        assert response.status_code == ok, (method, url, response.status_code, response.content)


def test_staff_who_are_not_members_manage_any_projects_people(team):
    staff = team.client("staff")
    response = staff.post(members_url(team.other.id), {"user": "outsider", "role": "reviewer"}, format="json")
    assert response.status_code == 201, response.content
    assert membership(team, "outsider", team.other).role == "reviewer"
    assert [m["username"] for m in staff.get(members_url(team.other.id)).json()] == ["otheradmin", "outsider"]


def test_another_projects_membership_or_invitation_is_404_through_this_projects_url(team):
    foreign = membership(team, "otheradmin", team.other)
    foreign_invitation = invitation_create(project=team.other, role=Role.ADMIN, created_by=team.users["otheradmin"]).invitation
    admin = team.client("boss")
    before = state(team.project, team.other)
    for method, url, body in (
        ("patch", members_url(team.project.id, foreign.id), {"role": "annotator"}),
        ("delete", members_url(team.project.id, foreign.id), None),
        ("delete", invitations_url(team.project.id, foreign_invitation.id), None),
        ("patch", members_url(team.project.id, 10**9), {"role": "annotator"}),  # no such membership at all
        ("delete", invitations_url(team.project.id, 10**9), None),
        ("delete", members_url(team.project.id, 2**63), None),  # past a bigint: the URL converter's 404
    ):
        response = getattr(admin, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code, response.content)
        assert "otheradmin" not in response.content.decode()
    assert state(team.project, team.other) == before
    assert "not a member of this project" in admin.delete(members_url(team.project.id, foreign.id)).json()["detail"]
    assert admin.delete(invitations_url(team.project.id, foreign_invitation.id)).json() == {
        "detail": "No such invitation in this project.",
        "field": None,
    }


# --- members ----------------------------------------------------------------------------------------


def test_members_list_add_change_and_remove_end_to_end(team, make_user):
    admin = team.client("boss")
    listed = admin.get(members_url(team.project.id))
    assert listed.status_code == 200
    rows = listed.json()
    assert [(r["username"], r["role"]) for r in rows] == [("ann", "annotator"), ("boss", "admin"), ("rev", "reviewer")]
    boss = membership(team, "boss")
    assert rows[1] == {
        "id": boss.id,
        "user_id": team.users["boss"].id,
        "username": "boss",
        "email": "",
        "role": "admin",
        "created_at": boss.created_at.isoformat().replace("+00:00", "Z"),
    }

    newcomer = make_user("newcomer")
    newcomer.email = "New.Comer@example.com"
    newcomer.save()
    added = admin.post(members_url(team.project.id), {"user": "new.comer@EXAMPLE.com", "role": "reviewer"}, format="json")
    assert added.status_code == 201, added.content
    body = added.json()
    new_membership = Membership.objects.get(project=team.project, user=newcomer)
    assert (body["id"], body["user_id"], body["username"], body["email"], body["role"]) == (
        new_membership.id, newcomer.id, "newcomer", "New.Comer@example.com", "reviewer",
    )
    by_name = admin.post(members_url(team.project.id), {"user": "outsider", "role": "annotator"}, format="json")
    assert by_name.status_code == 201 and membership(team, "outsider").role == "annotator"

    changed = admin.patch(members_url(team.project.id, new_membership.id), {"role": "admin"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "admin"
    assert Membership.objects.get(pk=new_membership.id).role == "admin"

    removed = admin.delete(members_url(team.project.id, new_membership.id))
    assert removed.status_code == 204 and removed.content == b""
    assert not Membership.objects.filter(pk=new_membership.id).exists()
    assert [r["username"] for r in admin.get(members_url(team.project.id)).json()] == ["ann", "boss", "outsider", "rev"]


def test_removing_a_member_frees_their_open_items_and_keeps_their_labels(team):
    done = make_solution(team.project, "q1", ["a"])
    open_one = make_solution(team.project, "q2", ["b"])
    Assignment.objects.create(solution=done, annotator=team.users["ann"], status=Assignment.Status.SUBMITTED)
    Assignment.objects.create(solution=open_one, annotator=team.users["ann"])
    HumanLabel.objects.create(step=done.steps.get(), annotator=team.users["ann"], value=1)
    response = team.client("boss").delete(members_url(team.project.id, membership(team, "ann").id))
    assert response.status_code == 204
    assert list(Assignment.objects.filter(annotator=team.users["ann"]).values_list("solution_id", flat=True)) == [done.id]
    assert HumanLabel.objects.filter(annotator=team.users["ann"]).count() == 1
    assert team.client("ann").get(members_url(team.project.id)).status_code == 404  # not a member any more


def test_bad_member_requests_are_400_naming_the_field_and_change_nothing(team):
    admin = team.client("boss")
    url = members_url(team.project.id)
    ann = members_url(team.project.id, membership(team, "ann").id)
    before = state(team.project, team.other)
    cases = [
        ("post", url, {"user": "nobody", "role": "annotator"}, "user", "user: No one has the username or e-mail address 'nobody'"),
        ("post", url, {"user": "   ", "role": "annotator"}, "user", "user: This field is required."),
        ("post", url, {"role": "annotator"}, "user", "user: This field is required."),
        ("post", url, {"user": "outsider", "role": "king"}, "role", "role: Select a valid choice. king is not one of"),
        ("post", url, {"user": "outsider"}, "role", "role: This field is required."),
        ("post", url, {"user": "outsider", "role": "admin", "roles": "x"}, "roles", "roles: not a field of this request"),
        ("post", url, {"user": ["outsider"], "role": "admin"}, "user", "user: No one has the username"),
        ("post", url, {"user": None, "role": None}, "user", "user: This field is required.; role: This field is required."),
        ("post", url, ["outsider", "admin"], None, "Send a JSON object with the fields user, role."),
        ("patch", ann, {"role": "king"}, "role", "role: Select a valid choice."),
        ("patch", ann, {}, "role", "role: This field is required."),
        ("patch", ann, {"role": 3}, "role", "role: Select a valid choice. 3 is not one of"),
        ("patch", ann, "admin", None, "Send a JSON object with the fields role."),
    ]
    for method, target, body, field_name, message in cases:
        response = getattr(admin, method)(target, body, format="json")
        assert response.status_code == 400, (body, response.status_code, response.content)
        answer = response.json()
        assert answer["field"] == field_name and answer["detail"].startswith(message), (body, answer)
    for raw in (b"{not json", b'{"user": "outsider", "role": "admin"'):
        response = admin.generic("POST", url, raw, content_type="application/json")
        assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]
    assert state(team.project, team.other) == before


def test_adding_someone_who_is_a_member_already_is_a_conflict(team):
    before = state(team.project, team.other)
    response = team.client("boss").post(members_url(team.project.id), {"user": "ANN", "role": "admin"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": "ann is already a member of this project (as annotator).", "field": "user"}
    assert state(team.project, team.other) == before


def test_the_last_admin_can_be_neither_demoted_nor_removed(team):
    admin = team.client("boss")
    boss = membership(team, "boss")
    rev = membership(team, "rev")
    refusal = "boss is the project's only admin: make someone else an admin first."
    before = state(team.project, team.other)
    demoted = admin.patch(members_url(team.project.id, boss.id), {"role": "annotator"}, format="json")
    assert demoted.status_code == 409 and demoted.json() == {"detail": refusal, "field": "role"}
    removed = admin.delete(members_url(team.project.id, boss.id))
    assert removed.status_code == 409 and removed.json() == {"detail": refusal, "field": None}
    staff_try = team.client("staff").delete(members_url(team.project.id, boss.id))  # staff are held to it too
    assert staff_try.status_code == 409
    assert state(team.project, team.other) == before

    # With a second admin the first may step down; then the second is the last one.
    assert admin.patch(members_url(team.project.id, rev.id), {"role": "admin"}, format="json").status_code == 200
    assert admin.patch(members_url(team.project.id, boss.id), {"role": "annotator"}, format="json").status_code == 200
    rev_client = team.client("rev")
    assert team.client("boss").get(members_url(team.project.id)).status_code == 403  # boss is an annotator now
    last = rev_client.delete(members_url(team.project.id, rev.id))
    assert last.status_code == 409 and last.json()["detail"].startswith("rev is the project's only admin")
    assert Membership.objects.get(pk=rev.id).role == "admin"
    # Removing yourself while another admin remains works.
    assert rev_client.patch(members_url(team.project.id, boss.id), {"role": "admin"}, format="json").status_code == 200
    assert rev_client.delete(members_url(team.project.id, rev.id)).status_code == 204
    assert rev_client.get(members_url(team.project.id)).status_code == 404


# --- invitations ------------------------------------------------------------------------------------


def test_invitations_make_list_and_revoke_end_to_end(team):
    admin = team.client("boss")
    url = invitations_url(team.project.id)
    made = admin.post(url, {"role": "reviewer", "email": " newbie@example.com "}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    invitation = Invitation.objects.get(project=team.project)
    token = body["token"]
    assert len(token) >= 40 and body["link"] == "http://testserver" + reverse("invitation", args=[token])
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (body["id"], body["role"], body["email"], body["state"], body["created_by"]) == (
        invitation.id, "reviewer", "newbie@example.com", "open", "boss",
    )
    assert (body["sent_to"], body["send_error"], body["accepted_by"], body["revoked_at"]) == ("newbie@example.com", None, None, None)
    assert abs(invitation.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newbie@example.com"] and body["link"] in mail.outbox[0].body

    quiet = admin.post(url, {"role": "annotator", "email": "quiet@example.com", "days": 30, "send": False}, format="json")
    assert quiet.status_code == 201 and quiet.json()["sent_to"] == "" and len(mail.outbox) == 1
    quiet_row = Invitation.objects.get(pk=quiet.json()["id"])
    assert abs(quiet_row.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    bare = admin.post(url, {"role": "admin", "send": True}, format="json")  # no address: nothing to send to
    assert bare.status_code == 201 and bare.json()["email"] == "" and bare.json()["sent_to"] == ""
    assert len(mail.outbox) == 1

    listed = admin.get(url)
    assert listed.status_code == 200
    rows = listed.json()
    assert [(r["id"], r["role"], r["state"]) for r in rows] == [
        (bare.json()["id"], "admin", "open"), (quiet_row.id, "annotator", "open"), (invitation.id, "reviewer", "open"),
    ]
    assert set(rows[0]) == {"id", "role", "email", "state", "created_by", "created_at", "expires_at", "accepted_by",
                            "accepted_at", "revoked_at"}
    tokens = [body["token"], quiet.json()["token"], bare.json()["token"]]
    hashes = list(Invitation.objects.values_list("token_hash", flat=True))
    for secret in tokens + hashes:
        assert secret not in listed.content.decode()

    revoked = admin.delete(invitations_url(team.project.id, invitation.id))
    assert revoked.status_code == 204 and revoked.content == b""
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert admin.delete(invitations_url(team.project.id, invitation.id)).status_code == 204  # again: still revoked
    assert {r["id"]: r["state"] for r in admin.get(url).json()}[invitation.id] == "revoked"
    gone = Client().get(body["link"])
    assert gone.status_code == 410 and "revoked by the project" in gone.content.decode()

    Invitation.objects.filter(pk=quiet_row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert {r["id"]: r["state"] for r in admin.get(url).json()}[quiet_row.id] == "expired"


def test_bad_invitation_requests_are_400_naming_the_field_and_change_nothing(team):
    admin = team.client("boss")
    url = invitations_url(team.project.id)
    before = state(team.project, team.other)
    cases = [
        ({"role": "king"}, "role", "role: Select a valid choice. king is not one of"),
        ({}, "role", "role: This field is required."),
        ({"role": "annotator", "email": "nope"}, "email", "email: Enter a valid email address."),
        ({"role": "annotator", "days": 0}, "days", "days: Ensure this value is greater than or equal to 1."),
        ({"role": "annotator", "days": 91}, "days", "days: Ensure this value is less than or equal to 90."),
        ({"role": "annotator", "days": "soon"}, "days", "days: Enter a whole number."),
        ({"role": "annotator", "days": True}, "days", "days: Enter a whole number."),
        ({"role": "annotator", "email": "a@example.com", "send": "maybe"}, "send", "send: 'maybe' is not true or false."),
        ({"role": "annotator", "token": "mine"}, "token", "token: not a field of this request"),
        ([{"role": "annotator"}], None, "Send a JSON object with the fields role, email, days, send."),
    ]
    for body, field_name, message in cases:
        response = admin.post(url, body, format="json")
        assert response.status_code == 400, (body, response.status_code, response.content)
        answer = response.json()
        assert answer["field"] == field_name and answer["detail"].startswith(message), (body, answer)
    assert state(team.project, team.other) == before
    assert not Invitation.objects.exists()


def test_a_link_made_here_joins_a_new_person_through_the_invitation_page(team):
    admin = team.client("boss")
    made = admin.post(invitations_url(team.project.id), {"role": "reviewer", "email": "newbie@example.com"}, format="json").json()
    visitor = Client()
    page = visitor.get(made["link"])
    assert page.status_code == 200 and "Join Geometry" in page.content.decode()
    joined = visitor.post(made["link"], {"username": "newbie", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert joined.status_code == 302 and joined["Location"] == reverse("home")
    newbie = get_user_model().objects.get(username="newbie")
    assert newbie.email == "newbie@example.com" and newbie.check_password(GOOD_PASSWORD)
    assert Membership.objects.get(project=team.project, user=newbie).role == "reviewer"
    [row] = admin.get(invitations_url(team.project.id)).json()
    assert (row["state"], row["accepted_by"]) == ("used", "newbie") and row["accepted_at"] is not None
    assert "newbie" in [m["username"] for m in admin.get(members_url(team.project.id)).json()]
    # A used invitation cannot be revoked: the member is removed instead.
    used = admin.delete(invitations_url(team.project.id, made["id"]))
    assert used.status_code == 409
    assert used.json() == {"detail": "This invitation was accepted already; remove the member instead.", "field": None}
    assert Invitation.objects.get(pk=made["id"]).revoked_at is None


def test_a_signed_in_person_accepts_a_link_made_here(team):
    made = team.client("boss").post(invitations_url(team.project.id), {"role": "annotator"}, format="json").json()
    outsider = Client()
    outsider.force_login(team.users["outsider"])
    assert "Join as outsider" in outsider.get(made["link"]).content.decode()
    assert outsider.post(made["link"]).status_code == 302
    assert membership(team, "outsider").role == "annotator"
    assert team.client("outsider").get(members_url(team.project.id)).status_code == 403  # a member now, not an admin


def test_an_unsendable_email_still_makes_the_invitation_and_says_why(team, settings):
    with socket.socket() as probe:  # a port nothing listens on: the mail server is unreachable
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    response = team.client("boss").post(invitations_url(team.project.id), {"role": "annotator", "email": "far@example.com"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sent_to"] == "" and body["send_error"].startswith("The e-mail to far@example.com could not be sent (")
    assert Client().get(body["link"]).status_code == 200  # the link works all the same


def test_an_admin_scripts_a_team_with_a_token(team, make_user, settings):
    """What the API is for: with only an API token, add people, set their roles and invite the rest."""
    from stepmark import authentication

    settings.STEPMARK_TOKEN_CACHE_SECONDS = 0
    authentication._recent.clear()
    for name in ("alice", "bob"):
        make_user(name)
    script = Client(headers={"Authorization": f"Token {Token.objects.create(user=team.users['boss']).key}"})

    def call(method: str, url: str, body: dict | None = None):
        return getattr(script, method)(url, json.dumps(body) if body is not None else None, content_type="application/json")

    for name, role in (("alice", "annotator"), ("bob", "annotator")):
        assert call("post", members_url(team.project.id), {"user": name, "role": role}).status_code == 201
    bob = next(m for m in call("get", members_url(team.project.id)).json() if m["username"] == "bob")
    assert call("patch", members_url(team.project.id, bob["id"]), {"role": "reviewer"}).json()["role"] == "reviewer"
    invited = [call("post", invitations_url(team.project.id), {"role": "annotator", "email": f"p{i}@example.com"}) for i in range(3)]
    assert [r.status_code for r in invited] == [201, 201, 201] and len(mail.outbox) == 3
    assert sorted((m["username"], m["role"]) for m in call("get", members_url(team.project.id)).json()) == [
        ("alice", "annotator"), ("ann", "annotator"), ("bob", "reviewer"), ("boss", "admin"), ("rev", "reviewer"),
    ]
    authentication._recent.clear()


# --- the schema ---------------------------------------------------------------------------------------


def test_schema_generates_without_warnings_for_these_views():
    mine = [p for p in api_urls.urlpatterns if p.name in ("project-members", "project-member", "project-invitations", "project-invitation")]
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=[path("api/", include((mine, "api")))]).get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._warn_cache)
    operations = {path_: {method: op["operationId"] for method, op in item.items()} for path_, item in schema["paths"].items()}
    assert operations == {
        "/api/projects/{project_id}/members/": {"get": "project_members_list", "post": "project_member_add"},
        "/api/projects/{project_id}/members/{membership_id}/": {
            "patch": "project_member_role_set", "delete": "project_member_remove",
        },
        "/api/projects/{project_id}/invitations/": {"get": "project_invitations_list", "post": "project_invitation_create"},
        "/api/projects/{project_id}/invitations/{invitation_id}/": {"delete": "project_invitation_revoke"},
    }
    listed = schema["components"]["schemas"]["Invitation"]["properties"]
    assert "token" not in listed and "token_hash" not in listed
    assert {"link", "token"} <= set(schema["components"]["schemas"]["NewInvitation"]["properties"])
