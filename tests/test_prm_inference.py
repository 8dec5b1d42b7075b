"""Inference: the score and rank endpoints and the score_solution / rank_solutions commands give exactly
PRMScorer's numbers for the same input. The endpoints run the model on a real Celery worker process
listening on the `gpu` queue only, never in the web process; a request not answered within
STEPMARK_SCORING_WAIT_SECONDS is answered 202 and polled. Reviewers and admins may score, annotators
get 403, outsiders 404, and a refusal saves nothing."""

from __future__ import annotations

import base64
import io
import json

import pytest
import torch
from django.core.management import CommandError, call_command
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import Project, Role
from prm import inference
from prm.core.scoring import PRMScorer
from prm.core.tiny_models import build_tiny_backbone
from prm.models import PRMVersion
from tests.conftest import CeleryProcess, _celery_env, wait_for
from tests.factories import add_member, make_solution, png_bytes
from tests.test_job_faults import broker_down  # noqa: F401 (a fixture)
from workers.models import ScoringRequest

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


def _start_gpu_worker(settings) -> CeleryProcess:
    """A real worker process that consumes the `gpu` queue only, on this test's database and media."""
    return CeleryProcess(_celery_env(settings), queues="gpu")


@pytest.fixture
def gpu_worker(transactional_db, settings):
    from stepmark.celery import app

    app.control.purge()  # messages left by an earlier, interrupted run must not leak in
    worker = _start_gpu_worker(settings)
    yield worker
    worker.stop()


@pytest.fixture
def empty_queue(transactional_db):
    from stepmark.celery import app

    app.control.purge()


@pytest.fixture
def no_model_here():
    """The test process plays the web process: it must never load a model (prm.inference's cache)."""
    inference._scorers.clear()
    yield
    assert not inference._scorers, f"the web process loaded a model: {list(inference._scorers)}"


IMAGE = base64.b64encode(png_bytes((200, 30, 30))).decode()


def test_score_endpoint_runs_on_the_gpu_worker_and_equals_the_scorer(gpu_worker, no_model_here, setup, project,
                                                                      reference):
    users, _ = setup
    expected = reference.score_steps(question=QUESTION, steps=STEPS, images=[_image()])
    response = _client(users["rev"]).post("/api/prm/score/", {
        "project": project.pk, "question": QUESTION, "steps": STEPS, "image": f"data:image/png;base64,{IMAGE}",
    }, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"version", "steps", "step_scores", "response_score", "aggregation"}
    assert body["version"] == "live-v" and body["steps"] == STEPS and body["aggregation"] == "mean"
    _close(body["step_scores"], expected)
    assert body["response_score"] == pytest.approx(sum(expected) / len(expected), abs=TOLERANCE)
    served = ScoringRequest.objects.get()
    assert (served.status, served.kind, served.requested_by, served.result) == ("done", "score", users["rev"], body)
    assert served.payload["images"] == [f"data:image/png;base64,{IMAGE}"] and served.finished_at is not None

    # The same image given as an item of the project (its question used when none is given).
    item = make_solution(project, "apples", ["x"], question=QUESTION, color=(200, 30, 30)).item
    by_item = _client(users["rev"]).post("/api/prm/score/", {"project": project.pk, "item": item.pk, "steps": STEPS,
                                                             "aggregation": "min"}, format="json")
    assert by_item.status_code == 200, by_item.content
    _close(by_item.json()["step_scores"], expected)
    assert by_item.json()["response_score"] == pytest.approx(min(expected), abs=TOLERANCE)
    assert ScoringRequest.objects.filter(status="done").count() == 2


def test_rank_endpoint_runs_on_the_gpu_worker_and_sorts_by_the_scorers_score(gpu_worker, no_model_here, setup,
                                                                              project, reference):
    users, _ = setup
    response = _client(users["boss"]).post("/api/prm/rank/", {
        "project": project.pk, "question": QUESTION, "image": [IMAGE], "responses": RESPONSES,
    }, format="json")
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"version", "aggregation", "ranking"}
    ranking = response.json()["ranking"]
    solutions = [response.split("\n\n") for response in RESPONSES]
    expected = reference.score_responses(question=QUESTION, solutions=solutions, images=[_image()])
    assert [entry["index"] for entry in ranking] == sorted(range(3), key=lambda i: -expected[i])
    for entry in ranking:
        assert entry["score"] == pytest.approx(expected[entry["index"]], abs=TOLERANCE)
        assert entry["steps"] == solutions[entry["index"]]
    assert ScoringRequest.objects.get().kind == "rank"


def test_not_answered_within_the_wait_is_202_then_polled(empty_queue, no_model_here, setup, project, reference,
                                                          settings):
    users, _ = setup
    settings.STEPMARK_SCORING_WAIT_SECONDS = 0
    client = _client(users["rev"])
    response = client.post("/api/prm/score/", {"project": project.pk, "question": QUESTION, "steps": STEPS,
                                               "image": IMAGE}, format="json")
    # No worker runs yet: the request waits on the gpu queue.
    assert response.status_code == 202, response.content
    scoring_request = ScoringRequest.objects.get()
    url = f"/api/prm/scoring-requests/{scoring_request.pk}/"
    assert response.json() == {"id": scoring_request.pk, "status": "pending", "url": url}
    assert client.get(url).status_code == 202 and client.get(url).json()["status"] == "pending"

    worker = _start_gpu_worker(settings)
    try:
        done = wait_for(lambda: (r := client.get(url)).status_code == 200 and r, timeout=90, message="the result")
    finally:
        worker.stop()
    expected = reference.score_steps(question=QUESTION, steps=STEPS, images=[_image()])
    assert set(done.json()) == {"version", "steps", "step_scores", "response_score", "aggregation"}
    _close(done.json()["step_scores"], expected)
    assert ScoringRequest.objects.get().status == "done"


def test_failures_on_the_worker_are_400_for_the_request_500_for_the_server(gpu_worker, no_model_here, setup,
                                                                          project, tmp_path):
    users, _ = setup
    client = _client(users["rev"])
    PRMVersion.objects.create(project=project, name="gone", backbone="tiny", directory=str(tmp_path / "gone"))
    (tmp_path / "empty").mkdir()
    PRMVersion.objects.create(project=project, name="empty", backbone="tiny", directory=str(tmp_path / "empty"))
    gone = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"], "version": "gone"},
                       format="json")
    assert gone.status_code == 400 and "does not exist" in gone.json()["error"], gone.content
    broken = client.post("/api/prm/rank/", {"project": project.pk, "question": "q", "responses": ["a"],
                                            "version": "empty"}, format="json")
    assert broken.status_code == 500 and broken.json()["error"], broken.content
    assert sorted(ScoringRequest.objects.values_list("status", "bad_request")) == [("failed", False), ("failed", True)]
    # The poll answers the same.
    row = ScoringRequest.objects.get(bad_request=True)
    assert client.get(f"/api/prm/scoring-requests/{row.pk}/").json()["error"] == gone.json()["error"]


@pytest.mark.django_db
def test_bad_requests_say_why_and_save_nothing(no_model_here, setup, project):
    users, _ = setup
    client = _client(users["rev"])
    bad_image = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"],
                                                "image": base64.b64encode(b"not a picture").decode()}, format="json")
    assert bad_image.status_code == 400 and "image rejected" in bad_image.json()["error"]
    not_base64 = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"],
                                                 "image": "***"}, format="json")
    assert not_base64.status_code == 400 and "not valid base64" in not_base64.json()["error"]
    no_version = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"],
                                                 "version": "missing"}, format="json")
    assert no_version.status_code == 400 and "missing" in no_version.json()["error"]
    no_item = client.post("/api/prm/score/", {"project": project.pk, "item": 999999, "steps": ["a"]}, format="json")
    assert no_item.status_code == 400 and "no item 999999" in no_item.json()["error"]
    empty_response = client.post("/api/prm/rank/", {"project": project.pk, "question": "q", "responses": ["a", "  "]},
                                 format="json")
    assert empty_response.status_code == 400 and "no steps" in empty_response.json()["error"]
    aggregation = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"],
                                                  "aggregation": "median"}, format="json")
    assert aggregation.status_code == 400 and "aggregation" in aggregation.json()
    assert client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": []},
                       format="json").status_code == 400
    assert client.post("/api/prm/rank/", {"project": project.pk, "responses": ["a"]}, format="json").status_code == 400
    PRMVersion.objects.filter(project=project).update(status="retired")
    no_live = client.post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"]}, format="json")
    assert no_live.status_code == 400 and "no live PRM version" in no_live.json()["error"]
    assert not ScoringRequest.objects.exists()


def test_broker_down_answers_503_and_no_request_waits(empty_queue, broker_down, no_model_here, setup, project):  # noqa: F811
    users, _ = setup
    response = _client(users["rev"]).post("/api/prm/score/", {"project": project.pk, "question": "q", "steps": ["a"]},
                                          format="json")
    assert response.status_code == 503, response.content
    row = ScoringRequest.objects.get()
    assert response.json()["code"] == "queue_unavailable" and response.json()["id"] == row.pk
    assert "queue is unavailable" in response.json()["detail"]
    assert row.status == "failed" and "queue is unavailable" in row.error


def test_only_the_projects_reviewers_and_admins_score(gpu_worker, no_model_here, setup, project, make_user):
    users, _ = setup
    staff = make_user("staff", staff=True)
    other_admin = make_user("other-admin")
    add_member(Project.objects.create(name="other project"), other_admin, Role.ADMIN)
    score = {"project": project.pk, "question": QUESTION, "steps": STEPS}
    rank = {"project": project.pk, "question": QUESTION, "responses": RESPONSES}

    refused = {None: (401, 403), "stranger": (404,), "other-admin": (404,), "ann": (403,)}
    clients = {None: APIClient(), "stranger": _client(users["stranger"]), "other-admin": _client(other_admin),
               "ann": _client(users["ann"])}
    for name, codes in refused.items():
        for url, body in (("/api/prm/score/", score), ("/api/prm/rank/", rank)):
            assert clients[name].post(url, body, format="json").status_code in codes, (name, url)
    assert not ScoringRequest.objects.exists()

    for user in (users["rev"], users["boss"], staff):
        assert _client(user).post("/api/prm/score/", score, format="json").status_code == 200, user
        assert _client(user).post("/api/prm/rank/", rank, format="json").status_code == 200, user
    assert ScoringRequest.objects.filter(status="done").count() == 6

    # A request's outcome is read under the same rule; a refusal changes nothing.
    row = ScoringRequest.objects.filter(kind="score").first()
    url = f"/api/prm/scoring-requests/{row.pk}/"
    for name, codes in refused.items():
        assert clients[name].get(url).status_code in codes, name
    assert clients["stranger"].get("/api/prm/scoring-requests/999999/").status_code == 404
    for user in (users["rev"], users["boss"], staff):
        answer = _client(user).get(url)
        assert answer.status_code == 200 and answer.json() == row.result
    assert ScoringRequest.objects.count() == 6


@pytest.mark.django_db
def test_outsiders_get_404_and_annotators_403_on_version_admin_actions(setup, project):
    users, version = setup
    other = PRMVersion.objects.create(project=project, name="cand", backbone="tiny", directory=version.directory)
    stranger, annotator, admin = (_client(users[name]) for name in ("stranger", "ann", "boss"))
    assert stranger.get(f"/api/projects/{project.pk}/prm-versions/").status_code == 404
    assert stranger.post(f"/api/projects/{project.pk}/prm-versions/{other.pk}/promote/").status_code == 404

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
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    from prm import registry_urls
    from workers import api_urls

    GENERATOR_STATS.reset()
    scoring = [pattern for pattern in api_urls.urlpatterns if str(pattern.pattern).startswith("prm/")]
    versions = [pattern for pattern in registry_urls.urlpatterns if str(pattern.pattern).startswith("api/")]
    schema = SchemaGenerator(patterns=[path("api/", include(scoring)), *versions]).get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._warn_cache)
    assert {"/api/prm/score/", "/api/prm/rank/", "/api/prm/scoring-requests/{request_id}/"} <= set(schema["paths"])
    operations = {op["operationId"] for item in schema["paths"].values() for op in item.values()}
    assert {"prm_score", "prm_rank", "prm_scoring_request_retrieve", "prm_versions_list"} <= operations


@pytest.mark.django_db
def test_old_scoring_requests_are_pruned_and_their_poll_url_answers_404(settings, project, make_user):
    from datetime import timedelta

    from django.utils import timezone

    from stepmark.celery import app
    from workers.tasks import prune_scoring_requests

    settings.STEPMARK_SCORING_KEEP_SECONDS = 3600
    reviewer = make_user("rita")
    add_member(project, reviewer, Role.ADMIN)
    rows = {state: ScoringRequest.objects.create(project=project, kind="score", status=state, payload={"images": ["x" * 1000]})
            for state in ("done", "failed", "pending", "running")}
    fresh = ScoringRequest.objects.create(project=project, kind="score", status="done")
    ScoringRequest.objects.filter(pk__in=[row.pk for row in rows.values()]).update(
        created_at=timezone.now() - timedelta(seconds=3601)
    )
    assert prune_scoring_requests.apply().get() == 4
    assert list(ScoringRequest.objects.values_list("pk", flat=True)) == [fresh.pk]
    client = APIClient()
    client.force_authenticate(reviewer)
    assert client.get(f"/api/prm/scoring-requests/{rows['done'].pk}/").status_code == 404
    assert client.get(f"/api/prm/scoring-requests/{fresh.pk}/").status_code == 200
    # Beat runs it hourly, on the default queue.
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert schedule["workers.tasks.scoring_requests_prune"]["schedule"] == 3600
    assert app.conf.task_routes["workers.tasks.scoring_requests_prune"] == {"queue": "default"}
