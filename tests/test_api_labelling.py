"""The labelling and review REST API (annotation.api.labelling), by token and by session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Assignment, AutoLabel, GoldLabel, HumanLabel, Item, LabelChange, Role
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Team:
    project: object
    users: dict
    solutions: list

    def client(self, name: str) -> APIClient:
        """A client authenticated by the user's API token (None: anonymous)."""
        client = APIClient()
        if name != "anonymous":
            token, _ = Token.objects.get_or_create(user=self.users[name])
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client


@pytest.fixture
def team(project, make_user) -> Team:
    project.overlap = 2
    project.save()
    users = {}
    for name, role in (("ann1", Role.ANNOTATOR), ("ann2", Role.ANNOTATOR), ("rev", Role.REVIEWER), ("boss", Role.ADMIN)):
        users[name] = make_user(name)
        add_member(project, users[name], role)
    users["outsider"] = make_user("outsider")
    users["staff"] = make_user("staff", staff=True)
    first = make_solution(project, "q1", ["Read the figure.", "2 + 3 = 5.", "The answer is 5."], color=(10, 10, 10))
    second = make_solution(project, "q2", ["Count the sides.", "There are 6."], color=(20, 20, 20))
    step = first.steps.get(index=1)
    AutoLabel.objects.create(step=step, kind="mc", source="mc-v1", score=0.25, num_correct=1, num_total=4)
    AutoLabel.objects.create(step=step, kind="prm", source="prm-v1", score=0.9)
    return Team(project=project, users=users, solutions=[first, second])


def url(name: str, **kwargs) -> str:
    return reverse(f"api:{name}", kwargs=kwargs)


def label_url(team: Team, assignment_id: int, step_id: int) -> str:
    return url("assignment-step-label", project_id=team.project.id, assignment_id=assignment_id, step_id=step_id)


def take_next(client: APIClient, team: Team) -> dict:
    response = client.post(url("project-next", project_id=team.project.id))
    assert response.status_code == 201, response.content
    return response.json()


def label_all(client: APIClient, team: Team, taken: dict, values: list[int]) -> None:
    steps = taken["solution"]["steps"]
    assert len(steps) == len(values)
    for position, (step, value) in enumerate(zip(steps, values, strict=True)):
        response = client.put(label_url(team, taken["assignment"]["id"], step["id"]), {"value": value}, format="json")
        assert response.status_code == 200, response.content
        # Labelled in order in an every-step project: the steps after this one are still missing.
        later = [later["id"] for later in steps[position + 1:]]
        assert response.json() == {
            "step_id": step["id"], "index": step["index"], "value": value, "error_category": "", "error_note": "",
            "missing_step_ids": later,
        }


def _handed_out_an_hour_ago(taken: dict) -> None:
    """Seconds on task are capped by the wall time since the assignment was handed out."""
    from datetime import timedelta

    from django.utils import timezone

    Assignment.objects.filter(id=taken["assignment"]["id"]).update(created_at=timezone.now() - timedelta(hours=1))


def submit(client: APIClient, team: Team, assignment_id: int, **body):
    return client.post(
        url("assignment-submit", project_id=team.project.id, assignment_id=assignment_id), body, format="json"
    )


def test_whole_flow_by_token(team):
    ann1, ann2, rev = team.client("ann1"), team.client("ann2"), team.client("rev")
    first, second = team.solutions

    taken = take_next(ann1, team)
    assert taken["solution"]["id"] == first.id and taken["assignment"]["status"] == "assigned"
    assert [s["index"] for s in taken["solution"]["steps"]] == [0, 1, 2]
    assert taken["missing_step_ids"] == [s["id"] for s in taken["solution"]["steps"]]
    assert "is_gold_check" not in taken["assignment"]  # hidden quality checks stay hidden
    # Asking again before finishing gives the same open assignment, not a second one.
    assert take_next(ann1, team)["assignment"]["id"] == taken["assignment"]["id"]
    label_all(ann1, team, taken, [1, 1, 1])
    _handed_out_an_hour_ago(taken)
    labels = ann1.get(url("assignment-labels", project_id=team.project.id, assignment_id=taken["assignment"]["id"]))
    assert labels.status_code == 200
    assert labels.json()["labelled"] == 3 and [row["value"] for row in labels.json()["labels"]] == [1, 1, 1]
    assert labels.json()["missing_step_ids"] == []
    done = submit(ann1, team, taken["assignment"]["id"], seconds=42)
    assert done.status_code == 200 and done.json()["status"] == "submitted" and done.json()["seconds_spent"] == 42
    assert take_next(ann1, team)["solution"]["id"] == second.id

    # Overlap 2: the second annotator gets the same first solution.
    taken2 = take_next(ann2, team)
    assert taken2["solution"]["id"] == first.id
    label_all(ann2, team, taken2, [1, -1, 0])
    assert submit(ann2, team, taken2["assignment"]["id"]).status_code == 200

    queue = rev.get(url("review-queue", project_id=team.project.id))
    assert queue.status_code == 200
    [candidate] = queue.json()
    assert candidate["solution_id"] == first.id and "annotators disagree" in candidate["reasons"]
    assert candidate["annotators"] == 2 and candidate["adjudicated"] is False

    step_ids = [s["id"] for s in taken2["solution"]["steps"]]
    detail = rev.get(url("review-solution", project_id=team.project.id, solution_id=first.id)).json()
    assert detail["annotators"] == ["ann1", "ann2"]
    assert [s["labels"] for s in detail["steps"]] == [
        {"ann1": 1, "ann2": 1}, {"ann1": 1, "ann2": -1}, {"ann1": 1, "ann2": 0}
    ]
    assert detail["steps"][1]["mc"] == {"score": 0.25, "right": 1, "total": 4}
    assert detail["steps"][1]["prm"]["score"] == 0.9 and detail["item"]["answer"] == "5"

    gold = rev.put(
        url("review-gold", project_id=team.project.id, solution_id=first.id, step_id=step_ids[1]),
        {"value": -1},
        format="json",
    )
    assert gold.status_code == 200
    assert gold.json()["value"] == -1 and gold.json()["source"] == "adjudicated" and gold.json()["decided_by"] == "rev"
    assert GoldLabel.objects.get(step_id=step_ids[1]).value == -1
    after = rev.get(url("review-solution", project_id=team.project.id, solution_id=first.id)).json()
    assert after["steps"][1]["gold"]["value"] == -1
    assert after["steps"][1]["history"][0] == {**after["steps"][1]["history"][0], "is_gold": True, "new_value": -1}
    # Adjudicated solutions leave the queue unless asked for.
    assert rev.get(url("review-queue", project_id=team.project.id)).json() == []
    again = rev.get(url("review-queue", project_id=team.project.id), {"include_adjudicated": "true"}).json()
    assert [c["adjudicated"] for c in again] == [True]


def test_whole_flow_by_session_needs_the_csrf_token(team):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="ann1", password="pw-ann1")
    client.get("/accounts/login/")  # sets the csrftoken cookie, as a browser would get it
    csrf = client.cookies["csrftoken"].value
    next_url = url("project-next", project_id=team.project.id)

    assert client.post(next_url).status_code == 403  # session writes need the CSRF token
    assert not Assignment.objects.exists()
    response = client.post(next_url, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201
    taken = response.json()
    for step in taken["solution"]["steps"]:
        put = client.put(
            label_url(team, taken["assignment"]["id"], step["id"]), {"value": 1}, format="json", HTTP_X_CSRFTOKEN=csrf
        )
        assert put.status_code == 200
    done = client.post(
        url("assignment-submit", project_id=team.project.id, assignment_id=taken["assignment"]["id"]),
        {},
        format="json",
        HTTP_X_CSRFTOKEN=csrf,
    )
    assert done.status_code == 200 and done.json()["status"] == "submitted"
    assert HumanLabel.objects.filter(annotator=team.users["ann1"], value=1).count() == 3
    # The image URL is the members' image page, which the same session can fetch.
    image = client.get(taken["solution"]["item"]["images"][0]["url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable  # (team, ids) -> url
    body: dict | None = None
    review: bool = False  # reviewers, admins and staff only
    mine: bool = False  # ann1's assignment: 404 to everyone else
    ok: int = 200


def _a(name: str, suffix: str = "") -> Callable:
    return lambda team, ids: url(name, project_id=team.project.id, assignment_id=ids["assignment"], **(
        {"step_id": ids["step"]} if suffix == "step" else {}
    ))


ENDPOINTS = [
    Endpoint("project", "get", lambda t, ids: url("project", project_id=t.project.id)),
    Endpoint("items", "get", lambda t, ids: url("project-items", project_id=t.project.id)),
    Endpoint("solution", "get", lambda t, ids: url("project-solution", project_id=t.project.id, solution_id=ids["solution"])),
    Endpoint("next", "post", lambda t, ids: url("project-next", project_id=t.project.id), ok=201),
    Endpoint("labels", "get", _a("assignment-labels"), mine=True),
    Endpoint("label-put", "put", _a("assignment-step-label", "step"), body={"value": -1}, mine=True),
    Endpoint("label-delete", "delete", _a("assignment-step-label", "step"), mine=True),
    Endpoint("submit", "post", _a("assignment-submit"), body={"cannot_judge_reason": "blurry"}, mine=True),
    Endpoint("skip", "post", _a("assignment-skip"), body={"reason": "later"}, mine=True),
    Endpoint("review", "get", lambda t, ids: url("review-queue", project_id=t.project.id), review=True),
    Endpoint(
        "review-solution", "get",
        lambda t, ids: url("review-solution", project_id=t.project.id, solution_id=ids["solution"]), review=True,
    ),
    Endpoint(
        "review-gold", "put",
        lambda t, ids: url("review-gold", project_id=t.project.id, solution_id=ids["solution"], step_id=ids["step"]),
        body={"value": 1}, review=True,
    ),
]


def _state() -> tuple:
    return (
        list(Assignment.objects.order_by("id").values_list("id", "annotator_id", "status")),
        list(HumanLabel.objects.order_by("id").values_list("id", "annotator_id", "value")),
        list(GoldLabel.objects.values_list("step_id", "value")),
        LabelChange.objects.count(),
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_it_validates_ownership(team, endpoint):
    mine = take_next(team.client("ann1"), team)
    step_id = mine["solution"]["steps"][0]["id"]
    put = team.client("ann1").put(label_url(team, mine["assignment"]["id"], step_id), {"value": 1}, format="json")
    assert put.status_code == 200
    ids = {"assignment": mine["assignment"]["id"], "solution": mine["solution"]["id"], "step": step_id}
    target = endpoint.path(team, ids)

    def call(name: str):
        return getattr(team.client(name), endpoint.method)(target, endpoint.body, format="json")

    before = _state()
    assert call("anonymous").status_code in (401, 403)
    assert call("outsider").status_code == 404  # outsiders are not told the project exists
    if endpoint.review:
        assert call("ann2").status_code == 403
    if endpoint.mine:
        # Another annotator, a reviewer, an admin and staff cannot touch ann1's assignment.
        for name in ("ann2", "rev", "boss", "staff"):
            assert call(name).status_code == 404, name
    assert _state() == before  # every refusal changed nothing

    rightful = "rev" if endpoint.review else "ann1"
    assert call(rightful).status_code == endpoint.ok  # the URL itself is right
    if endpoint.review:
        assert call("boss").status_code == endpoint.ok and call("staff").status_code == endpoint.ok


def test_project_list_shows_only_my_projects_with_my_role_and_progress(team):
    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    label_all(ann1, team, taken, [1, 0, -1])
    [mine] = ann1.get(url("projects")).json()
    assert mine["id"] == team.project.id and mine["role"] == "annotator"
    assert (mine["solutions"], mine["steps"], mine["labelled_steps"], mine["my_steps"], mine["my_today"]) == (2, 5, 3, 3, 3)
    assert team.client("ann2").get(url("projects")).json()[0]["my_steps"] == 0
    assert team.client("outsider").get(url("projects")).json() == []
    assert team.client("anonymous").get(url("projects")).status_code in (401, 403)

    detail = team.client("staff").get(url("project", project_id=team.project.id)).json()
    assert detail["role"] is None and detail["overlap"] == 2 and detail["label_mode"] == "all_steps"


def test_items_are_paginated_with_solution_ids_and_filter_by_data_source(team):
    first, second = team.solutions
    third = make_solution(team.project, "q1", ["Another try."], key="m2")  # a second solution of q1
    Item.objects.filter(external_id="q2").update(data_source="geometry")
    client = team.client("ann1")
    page = client.get(url("project-items", project_id=team.project.id), {"limit": 1}).json()
    assert page["count"] == 2 and page["next"] and len(page["results"]) == 1
    assert page["results"][0]["external_id"] == "q1"
    assert page["results"][0]["solution_ids"] == [first.id, third.id]
    only = client.get(url("project-items", project_id=team.project.id), {"data_source": "geometry"}).json()
    assert [(i["external_id"], i["solution_ids"]) for i in only["results"]] == [("q2", [second.id])]


def test_solution_shows_hints_and_answer_only_where_allowed(team):
    first = team.solutions[0]
    team.project.show_reference_answer = False
    team.project.save()
    solution_url = url("project-solution", project_id=team.project.id, solution_id=first.id)

    hidden = team.client("ann1").get(solution_url).json()
    assert hidden["item"]["answer"] is None
    assert [s["hints"] for s in hidden["steps"]] == [None, None, None]
    assert hidden["item"]["question"] == "What is 2+3?"
    sha = first.item.images.get().sha256
    assert hidden["item"]["images"][0]["url"].endswith(f"/images/{sha}/")

    shown = team.client("rev").get(solution_url).json()
    assert shown["item"]["answer"] == "5"
    assert shown["steps"][1]["hints"]["mc"] == {"score": 0.25, "right": 1, "total": 4, "source": "mc-v1"}
    assert shown["steps"][0]["hints"] == {}

    team.project.show_machine_labels = True
    team.project.show_reference_answer = True
    team.project.save()
    allowed = team.client("ann1").get(solution_url).json()
    assert allowed["item"]["answer"] == "5" and allowed["steps"][1]["hints"]["prm"]["score"] == 0.9


def test_label_records_the_hints_the_annotator_was_shown(team):
    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    hinted_step = taken["solution"]["steps"][1]["id"]
    ann1.put(label_url(team, taken["assignment"]["id"], hinted_step), {"value": 1}, format="json")
    assert HumanLabel.objects.get(step_id=hinted_step).shown_hints == {}
    team.project.show_machine_labels = True
    team.project.save()
    ann1.put(label_url(team, taken["assignment"]["id"], hinted_step), {"value": -1}, format="json")
    assert HumanLabel.objects.get(step_id=hinted_step).shown_hints["mc"]["score"] == 0.25


def test_a_label_write_never_clobbers_another_annotators(team):
    ann1, ann2 = team.client("ann1"), team.client("ann2")
    mine, theirs = take_next(ann1, team), take_next(ann2, team)
    assert mine["solution"]["id"] == theirs["solution"]["id"]  # overlap 2: the same steps
    label_all(ann2, team, theirs, [1, 1, 1])
    label_all(ann1, team, mine, [-1, -1, -1])
    step_ids = [s["id"] for s in mine["solution"]["steps"]]
    cleared = ann1.delete(label_url(team, mine["assignment"]["id"], step_ids[0]))
    assert cleared.status_code == 200 and cleared.json()["value"] is None
    # Writing through their assignment id is refused, not turned into a write of mine or theirs.
    assert ann1.put(label_url(team, theirs["assignment"]["id"], step_ids[1]), {"value": -1}, format="json").status_code == 404
    assert ann1.delete(label_url(team, theirs["assignment"]["id"], step_ids[2])).status_code == 404

    def values(name):
        return dict(HumanLabel.objects.filter(annotator=team.users[name]).values_list("step_id", "value"))

    assert values("ann2") == dict.fromkeys(step_ids, 1)
    assert values("ann1") == {step_ids[1]: -1, step_ids[2]: -1}


@pytest.mark.parametrize("body", [{"value": 2}, {"value": "x"}, {"value": True}, {"value": 0.5}, {"value": None}, {}])
def test_a_bad_label_value_is_400_naming_the_field(team, body):
    taken = take_next(team.client("ann1"), team)
    step_id = taken["solution"]["steps"][0]["id"]
    response = team.client("ann1").put(label_url(team, taken["assignment"]["id"], step_id), body, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "value" and response.json()["error"].startswith("value:")
    gold = team.client("rev").put(
        url("review-gold", project_id=team.project.id, solution_id=taken["solution"]["id"], step_id=step_id),
        body,
        format="json",
    )
    assert gold.status_code == 400 and gold.json()["field"] == "value"
    assert not HumanLabel.objects.exists() and not GoldLabel.objects.exists()


def test_a_step_of_another_solution_is_404(team):
    taken = take_next(team.client("ann1"), team)
    other_step = team.solutions[1].steps.first().id
    response = team.client("ann1").put(label_url(team, taken["assignment"]["id"], other_step), {"value": 1}, format="json")
    assert response.status_code == 404 and not HumanLabel.objects.exists()


def test_assignment_payloads_match_the_documented_serializer(team):
    """next, label and submit build their answers by hand; they must read as DRF would write them."""
    from rest_framework.renderers import JSONRenderer

    from annotation.api.labelling_serializers import AssignmentSerializer, LabelSavedSerializer
    from annotation.models import Assignment

    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    step_id, *others = [s["id"] for s in taken["solution"]["steps"]]
    labelled = ann1.put(label_url(team, taken["assignment"]["id"], step_id), {"value": -1}, format="json")
    assert labelled["Content-Type"] == "application/json"
    saved = {"step_id": step_id, "index": 0, "value": -1, "error_category": "", "error_note": "", "missing_step_ids": others}
    assert labelled.content == JSONRenderer().render(LabelSavedSerializer(saved).data)
    label_all(ann1, team, taken, [1, 1, 1])
    _handed_out_an_hour_ago(taken)
    done = submit(ann1, team, taken["assignment"]["id"], seconds=7)
    stored = Assignment.objects.get(id=taken["assignment"]["id"])
    expected = dict(AssignmentSerializer(stored).data)
    assert done.content == JSONRenderer().render(expected)
    changed = {"status": "submitted", "seconds_spent": 7, "finished_at": expected["finished_at"]}
    assert taken["assignment"] | changed | {"created_at": expected["created_at"]} == expected
    assert expected["finished_at"] is not None


def test_the_browsable_api_still_renders_label_saves_as_html(team):
    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    step_id = taken["solution"]["steps"][0]["id"]
    page = ann1.put(label_url(team, taken["assignment"]["id"], step_id), {"value": 1}, format="json", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert b"&quot;value&quot;: 1" in page.content or b'"value": 1' in page.content


def test_submit_with_missing_steps_is_422_with_the_message(team):
    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    first_step = taken["solution"]["steps"][0]["id"]
    ann1.put(label_url(team, taken["assignment"]["id"], first_step), {"value": 1}, format="json")
    response = submit(ann1, team, taken["assignment"]["id"], seconds=5)
    assert response.status_code == 422
    assert response.json() == {"error": "label every step first: step 2, 3 has no label"}
    assert Assignment.objects.get().status == "assigned" and Assignment.objects.get().seconds_spent == 0

    bad = submit(ann1, team, taken["assignment"]["id"], seconds=-1)
    assert bad.status_code == 400 and bad.json()["field"] == "seconds"
    for name in ("outsider", "ann2"):  # access is checked before the body: they learn nothing from it
        assert submit(team.client(name), team, taken["assignment"]["id"], seconds=-1).status_code == 404
    judged = submit(ann1, team, taken["assignment"]["id"], cannot_judge_reason="the figure is unreadable")
    assert judged.status_code == 200 and judged.json()["status"] == "cannot_judge"
    assert Assignment.objects.get().reason == "the figure is unreadable"


def test_a_finished_assignment_is_409_and_unchanged(team):
    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    label_all(ann1, team, taken, [1, 1, 1])
    assert submit(ann1, team, taken["assignment"]["id"]).status_code == 200
    before = _state()
    step_id = taken["solution"]["steps"][0]["id"]
    assignment_id = taken["assignment"]["id"]
    calls = [
        ann1.put(label_url(team, assignment_id, step_id), {"value": -1}, format="json"),
        ann1.delete(label_url(team, assignment_id, step_id)),
        submit(ann1, team, assignment_id),
        submit(ann1, team, assignment_id, seconds=-1),  # a bad body on a finished item: still 409
        ann1.post(url("assignment-skip", project_id=team.project.id, assignment_id=assignment_id), {}, format="json"),
    ]
    assert [c.status_code for c in calls] == [409, 409, 409, 409, 409]
    assert calls[0].json() == {"error": "this item is already submitted"}
    assert _state() == before


def test_skip_and_flag_finish_the_assignment_and_the_queue_moves_on(team):
    ann1 = team.client("ann1")
    first, second = team.solutions
    taken = take_next(ann1, team)
    skipped = ann1.post(
        url("assignment-skip", project_id=team.project.id, assignment_id=taken["assignment"]["id"]),
        {"reason": "  too long  "},
        format="json",
    )
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    assert Assignment.objects.get(pk=taken["assignment"]["id"]).reason == "too long"
    taken = take_next(ann1, team)
    assert taken["solution"]["id"] == second.id  # a skipped solution is not offered again
    flagged = ann1.post(
        url("assignment-skip", project_id=team.project.id, assignment_id=taken["assignment"]["id"]),
        {"flag": True},
        format="json",
    )
    assert flagged.json()["status"] == "flagged"
    nothing = ann1.post(url("project-next", project_id=team.project.id))
    assert nothing.status_code == 204 and nothing.content == b""
    # The skipped slot went back: the second annotator can still take both (the flagged one first:
    # with overlap 2 the queue completes what others have started before opening new items).
    ann2 = team.client("ann2")
    got = take_next(ann2, team)
    assert got["solution"]["id"] == second.id
    ann2.post(url("assignment-skip", project_id=team.project.id, assignment_id=got["assignment"]["id"]), {}, format="json")
    assert take_next(ann2, team)["solution"]["id"] == first.id


def test_schema_generates_with_no_warnings(tmp_path):
    schema_file = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))
    schema = schema_file.read_text()
    for path in (
        "/api/projects/:",
        "/api/projects/{project_id}/items/:",
        "/api/projects/{project_id}/solutions/{solution_id}/:",
        "/api/projects/{project_id}/next/:",
        "/api/projects/{project_id}/assignments/{assignment_id}/steps/{step_id}/label/:",
        "/api/projects/{project_id}/assignments/{assignment_id}/submit/:",
        "/api/projects/{project_id}/review/solutions/{solution_id}/steps/{step_id}/gold/:",
    ):
        assert f"  {path}\n" in schema, path


def test_images_are_served_to_token_clients_of_the_project_only(make_user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from annotation.models import Project, Role
    from tests.factories import add_member, make_solution

    project = Project.objects.create(name="Token images")
    sha = make_solution(project, "q", ["s"]).item.images.first().sha256
    member = make_user("tok_member")
    add_member(project, member, Role.ANNOTATOR)
    outsider = make_user("tok_outsider")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member).key}")
    response = client.get(f"/images/{sha}/")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=outsider).key}")
    assert client.get(f"/images/{sha}/").status_code == 404
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get(f"/images/{sha}/").status_code == 302


def test_first_error_projects_require_steps_up_to_the_first_incorrect_one(team):
    """The server decides what is missing; the page and API clients only show it."""
    team.project.label_mode = "first_error"
    team.project.save()
    ann1 = team.client("ann1")
    taken = take_next(ann1, team)
    assignment_id = taken["assignment"]["id"]
    first, second, third = (s["id"] for s in taken["solution"]["steps"])
    saved = ann1.put(label_url(team, assignment_id, second), {"value": -1}, format="json").json()
    assert saved["missing_step_ids"] == [first]  # the third step comes after the first error
    labels = ann1.get(url("assignment-labels", project_id=team.project.id, assignment_id=assignment_id)).json()
    assert labels["missing_step_ids"] == [first]
    cleared = ann1.delete(label_url(team, assignment_id, second))
    assert cleared.status_code == 200
    assert cleared.json() == {
        "step_id": second, "index": 1, "value": None, "error_category": "", "error_note": "",
        "missing_step_ids": [first, second, third],
    }
    labels = ann1.get(url("assignment-labels", project_id=team.project.id, assignment_id=assignment_id)).json()
    assert labels["missing_step_ids"] == [first, second, third]
    assert ann1.put(label_url(team, assignment_id, first), {"value": -1}, format="json").json()["missing_step_ids"] == []
    assert submit(ann1, team, assignment_id).status_code == 200
