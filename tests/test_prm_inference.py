"""Inference: the score and rank endpoints and the score_solution / rank_solutions commands give exactly
PRMScorer's numbers for the same input; members may score, outsiders get 404, annotators 403 on
admin actions."""

from __future__ import annotations

import base64
import io
import json

import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import Role
from prm.core.scoring import PRMScorer
from prm.core.tiny_models import build_tiny_backbone
from prm.models import PRMVersion
from tests.factories import add_member, make_solution, png_bytes

QUESTION = "What is 2+3?"
STEPS = ["Look at the picture: two apples and three apples.", "2 + 3 = 5.", "Answer: 5"]
RESPONSES = ["2 + 3 = 6.\n\nAnswer: 6", "Two plus three.\n\nThat is 5.\n\nAnswer: 5", "Answer: 5"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(2)
    return build_tiny_backbone("qwen2_vl", tmp_path_factory.mktemp("prm"), seed=3)


@pytest.fixture(scope="module")
def reference(model_dir):
    return PRMScorer(model_dir)


@pytest.fixture
def setup(project, make_user, model_dir):
    users = {name: make_user(name) for name in ("boss", "ann", "stranger", "rev")}
    add_member(project, users["boss"], Role.ADMIN)
    add_member(project, users["ann"], Role.ANNOTATOR)
    add_member(project, users["rev"], Role.REVIEWER)
    version = PRMVersion.objects.create(project=project, name="live-v", backbone="tiny", directory=str(model_dir),
                                        status=PRMVersion.Status.LIVE)
    return users, version


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _image() -> Image.Image:
    return Image.open(io.BytesIO(png_bytes((200, 30, 30)))).convert("RGB")


def _close(actual, expected):
    assert len(actual) == len(expected) and all(abs(a - b) < TOLERANCE for a, b in zip(actual, expected, strict=True))


@pytest.mark.django_db
def test_score_endpoint_equals_the_scorer_for_base64_and_item_images(setup, project, reference):
    users, _ = setup
    expected = reference.score_steps(question=QUESTION, steps=STEPS, images=[_image()])
    image = base64.b64encode(png_bytes((200, 30, 30))).decode()
    response = _client(users["rev"]).post("/api/prm/score/", {
        "project": project.pk, "question": QUESTION, "steps": STEPS, "image": f"data:image/png;base64,{image}",
    }, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == "live-v" and body["steps"] == STEPS
    _close(body["step_scores"], expected)
    assert body["response_score"] == pytest.approx(sum(expected) / len(expected), abs=TOLERANCE)

    # The same image given as an item of the project (its question used when none is given).
    item = make_solution(project, "apples", ["x"], question=QUESTION, color=(200, 30, 30)).item
    by_item = _client(users["rev"]).post("/api/prm/score/", {"project": project.pk, "item": item.pk, "steps": STEPS,
                                                             "aggregation": "min"}, format="json").json()
    _close(by_item["step_scores"], expected)
    assert by_item["response_score"] == pytest.approx(min(expected), abs=TOLERANCE)


@pytest.mark.django_db
def test_rank_endpoint_sorts_responses_by_the_scorers_response_score(setup, project, reference):
    users, _ = setup
    image = base64.b64encode(png_bytes((200, 30, 30))).decode()
    response = _client(users["rev"]).post("/api/prm/rank/", {
        "project": project.pk, "question": QUESTION, "image": [image], "responses": RESPONSES,
    }, format="json")
    assert response.status_code == 200, response.content
    ranking = response.json()["ranking"]
    solutions = [response.split("\n\n") for response in RESPONSES]
    expected = reference.score_responses(question=QUESTION, solutions=solutions, images=[_image()])
    assert [entry["index"] for entry in ranking] == sorted(range(3), key=lambda i: -expected[i])
    for entry in ranking:
        assert entry["score"] == pytest.approx(expected[entry["index"]], abs=TOLERANCE)
        assert entry["steps"] == solutions[entry["index"]]


@pytest.mark.django_db
def test_bad_requests_say_why(setup, project):
    users, _ = setup
    client = _client(users["rev"])
    bad_image = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"],
                                                "image": base64.b64encode(b"not a picture").decode()}, format="json")
    assert bad_image.status_code == 400 and "image rejected" in bad_image.json()["error"]
    no_version = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"],
                                                 "version": "missing"}, format="json")
    assert no_version.status_code == 400 and "missing" in no_version.json()["error"]
    assert client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": []},
                       format="json").status_code == 400


@pytest.mark.django_db
def test_outsiders_get_404_and_annotators_403_on_admin_actions(setup, project):
    users, version = setup
    other = PRMVersion.objects.create(project=project, name="cand", backbone="tiny", directory=version.directory)
    stranger, annotator, admin = (_client(users[name]) for name in ("stranger", "ann", "boss"))
    score = {"project": project.pk, "question": "q", "steps": ["a"]}
    assert stranger.post("/api/prm/score/", score, format="json").status_code == 404
    assert stranger.post("/api/prm/rank/", {**score, "responses": ["a"]}, format="json").status_code == 404
    assert stranger.get(f"/api/projects/{project.pk}/prm-versions/").status_code == 404
    assert stranger.post(f"/api/projects/{project.pk}/prm-versions/{other.pk}/promote/").status_code == 404
    assert APIClient().post("/api/prm/score/", score, format="json").status_code in (401, 403)
    # Scoring is for the project's reviewers and admins: an annotator is refused.
    assert annotator.post("/api/prm/score/", score, format="json").status_code == 403
    assert annotator.post("/api/prm/rank/", {**score, "responses": ["a"]}, format="json").status_code == 403

    names = [v["name"] for v in annotator.get(f"/api/projects/{project.pk}/prm-versions/").json()]
    assert sorted(names) == ["cand", "live-v"]
    assert annotator.post(f"/api/projects/{project.pk}/prm-versions/{other.pk}/promote/").status_code == 403
    assert annotator.post(f"/api/projects/{project.pk}/prm-versions/rollback/").status_code == 403

    promoted = admin.post(f"/api/projects/{project.pk}/prm-versions/{other.pk}/promote/")
    assert promoted.status_code == 200 and promoted.json()["action"] == "manual_promote"
    assert promoted.json()["previous_live"] == "live-v"
    rolled = admin.post(f"/api/projects/{project.pk}/prm-versions/rollback/")
    assert rolled.status_code == 200 and rolled.json()["version"] == "live-v"
    assert PRMVersion.objects.get(project=project, status="live").name == "live-v"


@pytest.mark.django_db
def test_commands_print_the_scorers_numbers(setup, project, reference, model_dir, tmp_path, capsys):
    image_path = tmp_path / "apples.png"
    image_path.write_bytes(png_bytes((200, 30, 30)))
    steps_file = tmp_path / "steps.json"
    steps_file.write_text(json.dumps(STEPS))
    expected = reference.score_steps(question=QUESTION, steps=STEPS, images=[_image()])

    for model in (["--project", project.name], ["--model-dir", str(model_dir)]):
        call_command("score_solution", *model, "--question", QUESTION, "--image", str(image_path),
                     "--steps-file", str(steps_file), "--json")
        printed = json.loads(capsys.readouterr().out)
        _close(printed["step_scores"], expected)

    call_command("score_solution", "--project", project.name, "--question", QUESTION, "--image", str(image_path),
                 "--steps-file", str(steps_file))
    table = capsys.readouterr().out
    assert "model: live-v" in table and f"{expected[1]:.4f}" in table

    files = []
    for index, response in enumerate(RESPONSES):
        path = tmp_path / f"response-{index}.txt"
        path.write_text(response)
        files += ["--steps-file", str(path)]
    call_command("rank_solutions", "--project", project.name, "--question", QUESTION, "--image", str(image_path),
                 *files, "--json")
    ranking = json.loads(capsys.readouterr().out)["ranking"]
    solutions = [response.split("\n\n") for response in RESPONSES]
    scores = reference.score_responses(question=QUESTION, solutions=solutions, images=[_image()])
    assert [entry["index"] for entry in ranking] == sorted(range(3), key=lambda i: -scores[i])
    assert [entry["score"] for entry in ranking] == pytest.approx(sorted(scores, reverse=True), abs=TOLERANCE)

    with pytest.raises(CommandError, match="no live PRM"):
        PRMVersion.objects.filter(project=project).update(status="retired")
        call_command("score_solution", "--project", project.name, "--question", QUESTION,
                     "--steps-file", str(steps_file))


def test_the_endpoints_document_themselves_without_schema_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    from prm import registry_urls

    GENERATOR_STATS.reset()
    api = [pattern for pattern in registry_urls.urlpatterns if str(pattern.pattern).startswith("api/")]
    schema = SchemaGenerator(patterns=api).get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._warn_cache)
    assert "/api/prm/score/" in schema["paths"] and "/api/prm/rank/" in schema["paths"]
