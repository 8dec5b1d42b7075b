"""The jobs page forms: sampling, MC labelling and PRM pre-labels on a selection, admins only."""

from __future__ import annotations

import pytest

from annotation.models import GoldLabel, HumanLabel, Item, Project, Role, Solution
from prm.models import PRMVersion
from tests.conftest import log_in, screenshot, wait_for
from tests.factories import add_member, make_solution
from workers.models import Job, JobChunk

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI = {"backend": "openai", "server": "policy"}
# What the job stores: the server's name, and its model for the label source (never a URL).
OPENAI_PARAMS = {"backend": "openai", "server": "policy", "model": "qwen-7b"}
SERVERS = {
    "policy": {"base_url": "http://policy.example:8000/v1", "model": "qwen-7b"},
    # Nothing listens on port 9: a job on this server fails at once with the reason.
    "down": {"base_url": "http://127.0.0.1:9/v1", "model": "tiny-policy"},
}


@pytest.fixture(autouse=True)
def _servers(settings, monkeypatch):
    """The operator's server list, here and in the worker processes a test starts (autouse: set first)."""
    import json

    settings.STEPMARK_GENERATION_SERVERS = SERVERS
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(SERVERS))


def _project() -> Project:
    """Items a1, a2 (source "geo") and b1 (source "chart"); a2 has two solutions; b1's is human-labelled."""
    project = Project.objects.create(name="forms")
    make_solution(project, "a1", ["x", "y"])
    make_solution(project, "a2", ["x"])
    make_solution(project, "a2", ["x", "y", "z"], key="m2")
    labelled = make_solution(project, "b1", ["x"])
    Item.objects.filter(external_id__in=["a1", "a2"]).update(data_source="geo")
    Item.objects.filter(external_id="b1").update(data_source="chart")
    return project, labelled


@pytest.fixture
def admin_client(client, make_user):
    def log_in_admin(project):
        add_member(project, make_user("boss"), Role.ADMIN)
        client.login(username="boss", password="pw-boss")
        return client

    return log_in_admin


def _post(client, project, kind: str, data: dict):
    return client.post(f"/projects/{project.id}/jobs/{kind}/", {f"{kind}-{key}": value for key, value in data.items()})


def _chunk_ids(job: Job, key: str) -> list[int]:
    return [i for chunk in JobChunk.objects.filter(job=job).order_by("index") for i in chunk.params[key]]


def test_mc_form_starts_a_job_on_items_named_by_external_id(admin_client):
    project, _ = _project()
    client = admin_client(project)
    response = _post(client, project, "mc", {**OPENAI, "strategy": "adaptive", "k": "8", "selection": "external_ids", "external_ids": " a2, b1 ,a2"})
    assert response.status_code == 302
    job = Job.objects.get(kind="mc_label")
    assert job.created_by.username == "boss"
    assert job.params["strategy"] == "adaptive" and job.params["k"] == 8
    assert job.params["backend"] == OPENAI_PARAMS and job.params["source"] == "qwen-7b"
    expected = list(Solution.objects.filter(item__external_id__in=["a2", "b1"]).order_by("pk").values_list("pk", flat=True))
    assert _chunk_ids(job, "solution_ids") == expected and len(expected) == 3


def test_mc_form_offers_early_stop_and_v1_1_max_steps_off_by_default(admin_client):
    project, _ = _project()
    client = admin_client(project)
    assert _post(client, project, "mc", {**OPENAI, "strategy": "exhaustive", "k": "16", "selection": "all"}).status_code == 302
    job = Job.objects.get(kind="mc_label")
    # As VisualPRM400K-v1.1 was built: no early stop, 12 steps.
    assert (job.params["early_stop"], job.params["max_steps"]) == (False, 12)
    assert job.params["sampling"] == {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "max_new_tokens": 4096, "seed": None}
    data = {**OPENAI, "strategy": "exhaustive", "k": "16", "selection": "all", "early_stop": "on", "max_steps": "16"}
    assert _post(client, project, "mc", data).status_code == 302
    job = Job.objects.filter(kind="mc_label").latest("pk")
    assert (job.params["early_stop"], job.params["max_steps"]) == (True, 16)
    response = _post(client, project, "mc", {**data, "max_steps": "13"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()


def test_mc_form_on_unlabelled_solutions_with_a_local_model(admin_client, make_user):
    project, human_labelled = _project()
    HumanLabel.objects.create(step=human_labelled.steps.first(), annotator=make_user("ann"), value=1)
    gold_labelled = Solution.objects.get(key="m2")
    GoldLabel.objects.create(step=gold_labelled.steps.last(), value=-1, source=GoldLabel.Source.IMPORTED, origin="test")
    client = admin_client(project)
    data = {"backend": "transformers", "model_path": "/models/policy", "label": "my-policy", "strategy": "binary_search", "k": "4", "selection": "unlabelled"}
    assert _post(client, project, "mc", data).status_code == 302
    job = Job.objects.get(kind="mc_label")
    assert job.params["backend"] == {"backend": "transformers", "model_path": "/models/policy", "name": "my-policy"}
    assert job.params["source"] == "my-policy"
    unlabelled = Solution.objects.exclude(pk__in=[human_labelled.pk, gold_labelled.pk]).order_by("pk")
    assert _chunk_ids(job, "solution_ids") == list(unlabelled.values_list("pk", flat=True))
    assert unlabelled.count() == 2


def test_sample_form_starts_a_job_on_one_data_source(admin_client):
    project, _ = _project()
    client = admin_client(project)
    page = client.get(f"/projects/{project.id}/jobs/").content.decode()
    assert '<option value="chart">chart</option>' in page and '<option value="geo">geo</option>' in page
    assert _post(client, project, "sample", {**OPENAI, "n": "3", "selection": "data_source", "data_source": "geo"}).status_code == 302
    job = Job.objects.get(kind="sample_solutions")
    assert job.params["n"] == 3 and job.params["policy"] == "qwen-7b" and job.params["backend"] == OPENAI_PARAMS
    assert _chunk_ids(job, "item_ids") == list(Item.objects.filter(data_source="geo").order_by("pk").values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("mc", {**OPENAI, "strategy": "adaptive", "k": "8", "selection": "external_ids", "external_ids": "a1, nope"}, "no item with external id nope"),
        ("mc", {**OPENAI, "strategy": "adaptive", "k": "0", "selection": "all"}, "greater than or equal to 1"),
        ("mc", {**OPENAI, "strategy": "guess", "k": "8", "selection": "all"}, "Select a valid choice"),
        ("mc", {"backend": "openai", "strategy": "adaptive", "k": "8", "selection": "all"}, "needs a server. Choose one"),
        ("mc", {"backend": "vllm", "strategy": "adaptive", "k": "8", "selection": "all"}, "needs a local model folder"),
        # A server the operator did not list (an internal service, say) is not a choice.
        ("sample", {**OPENAI, "server": "http://169.254.169.254/latest", "n": "2", "selection": "all"}, "Select a valid choice"),
        ("sample", {**OPENAI, "n": "2", "selection": "external_ids", "external_ids": " , "}, "List at least one item external id"),
        ("sample", {**OPENAI, "n": "2", "selection": "data_source", "data_source": ""}, "Choose the data source"),
        ("prelabel", {"selection": "all"}, "has no live PRM version"),
    ],
)
def test_bad_input_shows_a_clear_message_and_starts_nothing(admin_client, kind, data, message):
    project, _ = _project()
    client = admin_client(project)
    response = _post(client, project, kind, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body, body[:3000]
    assert "The job was not started" in body
    assert not Job.objects.exists()


def test_prelabel_form_uses_the_live_version_and_an_empty_selection_is_refused(admin_client):
    project, labelled = _project()
    PRMVersion.objects.create(project=project, name="prm-7", backbone="tiny", directory="/models/prm-7", status="live")
    client = admin_client(project)
    assert "prm-7" in client.get(f"/projects/{project.id}/jobs/").content.decode()
    Solution.objects.exclude(pk=labelled.pk).delete()
    GoldLabel.objects.create(step=labelled.steps.first(), value=1, source=GoldLabel.Source.IMPORTED, origin="test")
    response = _post(client, project, "prelabel", {"selection": "unlabelled"})
    assert response.status_code == 400 and "holds no solutions" in response.content.decode()
    assert _post(client, project, "prelabel", {"selection": "all"}).status_code == 302
    job = Job.objects.get(kind="prm_prelabel")
    assert job.params == {"version": "prm-7"} and _chunk_ids(job, "solution_ids") == [labelled.pk]


def test_priority_refresh_recomputes_every_solution(admin_client):
    project, _ = _project()
    client = admin_client(project)
    assert client.post(f"/projects/{project.id}/jobs/priority/").status_code == 302
    # No machine labels at all: every step is "unknown", the middle priority.
    assert set(Solution.objects.values_list("priority", flat=True)) == {0.5}


def test_outsiders_get_404_and_annotators_403_on_every_form(client, make_user):
    project, _ = _project()
    PRMVersion.objects.create(project=project, name="prm-x", backbone="tiny", directory="/m", status="live")
    valid = {
        "sample": {**OPENAI, "n": "2", "selection": "all"},
        "mc": {**OPENAI, "strategy": "adaptive", "k": "2", "selection": "all"},
        "prelabel": {"selection": "all"},
    }
    make_user("stranger")
    member = make_user("member")
    add_member(project, member, Role.ANNOTATOR)
    for username, status in (("stranger", 404), ("member", 403)):
        client.login(username=username, password="pw-" + username)
        for kind, data in valid.items():
            assert _post(client, project, kind, data).status_code == status, (username, kind)
        assert client.post(f"/projects/{project.id}/jobs/priority/").status_code == status
    assert not Job.objects.exists()
    assert set(Solution.objects.values_list("priority", flat=True)) == {0.0}


def test_browser_mc_form_starts_a_job_whose_row_shows_its_error(celery_worker_process, page, make_user):
    project, _ = _project()
    add_member(project, make_user("boss3"), Role.ADMIN)
    log_in(page, "boss3")
    page.goto(f"/projects/{project.id}/jobs/")
    form = page.locator("#mc-job form")
    form.locator("select[name=mc-backend]").select_option("openai")
    assert form.locator("input[name=mc-base_url]").count() == 0  # no URL to type: only the listed servers
    form.locator("select[name=mc-server]").select_option("down")
    form.locator("select[name=mc-strategy]").select_option("adaptive")
    form.locator("input[name=mc-k]").fill("4")
    form.locator("select[name=mc-selection]").select_option("external_ids")
    form.locator("input[name=mc-external_ids]").fill("a1, a2")
    form.locator("text=Start MC labelling").click()
    page.wait_for_selector("tr.job")
    assert "Monte Carlo step labels job" in page.locator(".messages").inner_text()
    row = page.locator("tr.job").first
    assert "adaptive, K=4" in row.inner_text()
    page.wait_for_selector("tr.job.status-failed .job-error", timeout=60000)
    assert "unreachable" in row.locator(".job-error").inner_text()
    job = wait_for(lambda: Job.objects.filter(kind="mc_label", status="failed").first(), message="failed job")
    assert job.params["k"] == 4 and job.progress_total == 3
    screenshot(page, "jobs-page-forms")
