"""The export form on the jobs page: every filter and format option of `export_dataset`, the images zip
beside JSON lines, progress in one unit; cancel and make-live ask first; the MC form's local default."""

from __future__ import annotations

import io
import json
import zipfile

import pyarrow.parquet as pq
import pytest

from annotation.models import GoldLabel, Project, Role, Solution
from prm.models import PRMVersion, PromotionDecision
from tests.factories import add_member, make_solution
from workers.models import Job, JobChunk
from workers.tasks import run_job_chunk

pytestmark = pytest.mark.django_db(transaction=True)


def _labelled(project: Project, n: int = 3, values=(1, 0)) -> list[Solution]:
    solutions = []
    for i in range(n):
        solution = make_solution(project, f"q{i}", [f"step a {i}", f"step b {i}"], color=(10 * i, 40, 90))
        for step, value in zip(solution.steps.order_by("index"), values, strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="test")
        solutions.append(solution)
    return solutions


@pytest.fixture
def admin(client, make_user, project):
    add_member(project, make_user("lead"), Role.ADMIN)
    client.login(username="lead", password="pw-lead")
    return client


def _export(client, project, data: dict) -> Job:
    response = client.post(f"/projects/{project.id}/jobs/export/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    job = Job.objects.filter(kind=Job.Kind.EXPORT).latest("id")
    for chunk_id in JobChunk.objects.filter(job=job).values_list("id", flat=True):
        run_job_chunk.apply(args=[chunk_id])
    job.refresh_from_db()
    assert job.status == "done", job.error
    return job


def _download(client, project, job, which: str = "") -> bytes:
    response = client.get(f"/projects/{project.id}/jobs/{job.id}/download/{which}")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_the_form_offers_every_option_of_the_command(admin, project):
    page = admin.get(f"/projects/{project.id}/jobs/").content.decode()
    for name in ("format", "file_format", "neutral", "images_zip", "label_source", "complete_only", "only_agreed",
                 "only_adjudicated", "since", "until", "mc_label", "mc_threshold", "advantage_tolerance",
                 "consensus_filter", "use_judge", "judge_first", "mc_judge_consensus", "judge_source", "training_run"):
        assert f'name="{name}"' in page, name


def test_trl_stepwise_as_jsonl_with_neutral_negative_and_the_images_zip_beside_it(admin, project):
    _labelled(project, 3, values=(1, 0))
    job = _export(admin, project, {"format": "trl-stepwise", "file_format": "jsonl", "neutral": "negative",
                                   "images_zip": "on", "label_source": "gold"})
    assert (job.progress_done, job.progress_total) == (3, 3), "progress counts solutions, out of those selected"
    assert job.counts == {"solutions_read": 3, "records_written": 3, "images": 3}
    rows = [json.loads(line) for line in _download(admin, project, job).decode().splitlines()]
    assert [row["labels"] for row in rows] == [[True, False]] * 3, "neutral steps written as negative"
    with zipfile.ZipFile(io.BytesIO(_download(admin, project, job, "images/"))) as archive:
        names = archive.namelist()
    assert len(names) == 3 and all(name in names for row in rows for name in row["images"])
    page = admin.get(f"/projects/{project.id}/jobs/").content.decode()
    assert "records written: 3" in page and "3 / 3 solutions" in page and "Images zip" in page
    assert "records_written" not in page


def test_trl_stepwise_as_parquet_and_neutral_skip(admin, project):
    _labelled(project, 2, values=(1, 0))
    job = _export(admin, project, {"format": "trl-stepwise", "file_format": "parquet", "neutral": "skip",
                                   "label_source": "gold"})
    table = pq.read_table(io.BytesIO(_download(admin, project, job)))
    assert table.column("labels").to_pylist() == [[True], [True]], "the row ends before the first neutral step"
    assert not job.images_file


def test_filters_reach_the_export(admin, project):
    solutions = _labelled(project, 3, values=(1, -1))
    Solution.objects.filter(pk=solutions[0].pk).update(created_at="2020-01-01T00:00:00Z")
    job = _export(admin, project, {"format": "visualprocessbench", "label_source": "gold", "since": "2021-01-01"})
    assert job.counts["records_written"] == 2 and job.progress_total == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": "trl-stepwise", "file_format": "parquet", "images_zip": "on"}, "images zip goes beside JSON lines only"),
        ({"format": "visualprocessbench", "file_format": "parquet"}, "writes jsonl"),
        ({"format": "visualprocessbench", "since": "yesterday"}, "Enter a valid date/time"),
        ({"format": "visualprocessbench", "mc_threshold": "2"}, "less than or equal to 1"),
    ],
)
def test_a_refused_export_says_why_next_to_the_form(admin, project, data, message):
    response = admin.post(f"/projects/{project.id}/jobs/export/", data)
    assert response.status_code == 400
    body = response.content.decode()
    section = body[body.index('id="export-job"'):body.index('id="sample-job"')]
    assert message in section and "The job was not started" in section
    assert not Job.objects.exists()


def test_cancel_asks_first_then_cancels(admin, project):
    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"})
    JobChunk.objects.create(job=job, index=0)
    page = admin.get(f"/projects/{project.id}/jobs/").content.decode()
    assert f'href="/projects/{project.id}/jobs/{job.id}/cancel/"' in page
    confirm = admin.get(f"/projects/{project.id}/jobs/{job.id}/cancel/")
    assert confirm.status_code == 200 and 'id="confirm-cancel"' in confirm.content.decode()
    job.refresh_from_db()
    assert job.status == "queued", "asking changes nothing"
    done = admin.post(f"/projects/{project.id}/jobs/{job.id}/cancel/")
    assert done.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_make_live_asks_first(admin, project, tmp_path):
    live = PRMVersion.objects.create(project=project, name="v1", backbone="b", directory=str(tmp_path),
                                     status=PRMVersion.Status.LIVE, metrics={"gold_macro_f1": 0.61})
    candidate = PRMVersion.objects.create(project=project, name="v2", backbone="b", directory=str(tmp_path),
                                          metrics={"gold_macro_f1": 0.7})
    confirm = admin.get(f"/projects/{project.id}/prm/versions/{candidate.id}/promote/").content.decode()
    assert 'id="confirm-promote"' in confirm and "0.700" in confirm and "0.610" in confirm and "retires" in confirm
    candidate.refresh_from_db()
    assert candidate.status == "candidate" and not PromotionDecision.objects.exists()
    admin.post(f"/projects/{project.id}/prm/versions/{candidate.id}/promote/")
    candidate.refresh_from_db(), live.refresh_from_db()
    assert candidate.status == "live" and live.status == "retired"


def test_kept_without_a_live_version_does_not_say_it_lost_to_one(admin, project, tmp_path):
    version = PRMVersion.objects.create(project=project, name="v1", backbone="b", directory=str(tmp_path))
    PromotionDecision.objects.create(project=project, version=version, action=PromotionDecision.Action.KEPT_CANDIDATE,
                                     reason="no live version; held-out macro F1 0.4 does not beat chance (0.5)")
    page = admin.get(f"/projects/{project.id}/prm/versions/").content.decode()
    assert "did not beat the live version" not in page and "no live version to compare" in page


def test_the_mc_form_defaults_to_the_local_model_without_servers(admin, project, settings, tmp_path):
    settings.STEPMARK_GENERATION_SERVERS = {}
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{}")
    settings.STEPMARK_DEFAULT_BACKBONE = tmp_path / "tiny"
    page = admin.get(f"/projects/{project.id}/jobs/").content.decode()
    mc = page[page.index('id="mc-job"'):page.index('id="prelabel-job"')]
    assert '<option value="transformers" selected>' in mc
    assert f'value="{tmp_path / "tiny"}"' in mc


@pytest.mark.parametrize("who", ["anonymous", "outsider", "annotator", "reviewer", "other_admin", "staff"])
def test_new_job_pages_are_for_the_projects_admins(client, make_user, project, who, tmp_path):
    other = Project.objects.create(name="other")
    _labelled(project, 1)
    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"})
    JobChunk.objects.create(job=job, index=0)
    done = Job.objects.create(kind=Job.Kind.EXPORT, project=project, status=Job.Status.DONE, params={})
    done.images_file.save("x-images.zip", io.BytesIO(b"zip"))
    version = PRMVersion.objects.create(project=project, name="v2", backbone="b", directory=str(tmp_path))
    if who != "anonymous":
        user = make_user(who, staff=who == "staff")
        if who in ("annotator", "reviewer"):
            add_member(project, user, who)
        elif who == "other_admin":
            add_member(other, user, Role.ADMIN)
        client.login(username=who, password="pw-" + who)
    base = f"/projects/{project.id}"
    responses = [
        client.get(f"{base}/jobs/{job.id}/cancel/"), client.post(f"{base}/jobs/{job.id}/cancel/"),
        client.get(f"{base}/jobs/{done.id}/download/images/"),
        client.get(f"{base}/prm/versions/{version.id}/promote/"), client.post(f"{base}/prm/versions/{version.id}/promote/"),
        client.post(f"{base}/jobs/export/", {"format": "visualprocessbench"}),
    ]
    job.refresh_from_db(), version.refresh_from_db()
    if who == "staff":
        assert [r.status_code for r in responses] == [200, 302, 200, 200, 302, 302]
        assert job.status == "cancelled" and version.status == "live"
        return
    expected = {"anonymous": 302, "annotator": 403, "reviewer": 403}.get(who, 404)
    assert [r.status_code for r in responses] == [expected] * 6
    assert job.status == "queued" and version.status == "candidate", "nothing changed"
    assert not PromotionDecision.objects.exists() and Job.objects.count() == 2


def test_a_training_runs_recorded_policy_exports_the_labels_it_trained_on(admin, project):
    """The form's counterpart of `export_dataset --merge-policy`: every merge setting of a run at once."""
    from django.contrib.auth import get_user_model

    from annotation.models import HumanLabel
    from prm.core.merge import MergePolicy, training_label
    from prm.models import TrainingRun
    from prm.training_data import training_set_build

    solutions = _labelled(project, 2, values=(1, -1))
    neutral_step = solutions[0].steps.order_by("index")[1]
    GoldLabel.objects.filter(step=neutral_step).delete()
    for name in ("v1", "v2"):
        voter = get_user_model().objects.create(username=name)
        HumanLabel.objects.create(step=neutral_step, annotator=voter, value=0)
    policy = MergePolicy(validation_fraction=0, neutral="skip", only_agreed=True)
    run = TrainingRun.objects.create(project=project, merge_policy=policy.to_dict())
    page = admin.get(f"/projects/{project.id}/jobs/").content.decode()
    assert f'<option value="{run.pk}">training run #{run.pk}' in page

    job = _export(admin, project, {"format": "visualprocessbench", "label_source": "merged", "training_run": str(run.pk),
                                   "neutral": "positive"})
    records = [json.loads(line) for line in _download(admin, project, job).decode().splitlines()]
    trained = {tuple(e.steps): e.labels for e in training_set_build(project=project, policy=policy).train}
    exported = {tuple(r["response"]["steps"]): [training_label(v, policy) for v in r["response"]["process_correctness"]]
                for r in records}
    # The run's neutral "skip" leaves the neutral step unlabelled: not a complete solution for this format.
    assert set(exported) == {("step a 1", "step b 1")} and exported[("step a 1", "step b 1")] == trained[("step a 1", "step b 1")]
    assert '"neutral": "skip"' in json.dumps(job.params) and '"only_agreed": true' in json.dumps(job.params), job.params


def _api_export(client, project, data: dict):
    return client.post(f"/api/projects/{project.id}/jobs/", data, content_type="application/json")


def test_the_api_takes_every_option_the_form_takes(admin, project):
    _labelled(project, 3, values=(1, 0))
    response = _api_export(admin, project, {
        "format": "trl-stepwise", "file_format": "jsonl", "neutral": "skip", "label_source": "gold",
        "flags": ["complete_only"], "since": "2000-01-01T00:00:00Z", "mc_threshold": 0.25,
    })
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.params["file_format"] == "jsonl" and job.params["options"] == {"neutral": "skip"}
    assert job.params["filters"]["complete_only"] is True and job.params["filters"]["mc_threshold"] == 0.25
    assert job.params["filters"]["since"].startswith("2000-01-01")
    for chunk_id in JobChunk.objects.filter(job=job).order_by("index").values_list("id", flat=True):
        run_job_chunk.apply(args=[chunk_id])
    job.refresh_from_db()
    assert job.status == "done", job.error
    rows = [json.loads(line) for line in _download(admin, project, job).splitlines()]
    # neutral "skip": each row ends before its first neutral step, so only the first (+) step is left.
    assert [row["labels"] for row in rows] == [[True]] * 3


def test_the_api_names_the_field_it_refuses(admin, project, make_user):
    from prm.models import TrainingRun

    elsewhere = Project.objects.create(name="elsewhere")
    foreign_run = TrainingRun.objects.create(project=elsewhere, merge_policy={})
    refusals = {
        "colour": ({"format": "visualprocessbench", "colour": "red"}, "unknown fields colour"),
        "mc_threshold": ({"format": "visualprocessbench", "mc_threshold": 3}, "mc_threshold: Ensure this value is less than or equal to 1.0"),
        "format": ({"format": "nope"}, "format: Select a valid choice. nope is not one of the available choices"),
        "training_run": ({"format": "visualprocessbench", "training_run": foreign_run.pk}, "training_run: Select a valid choice"),
        "flags": ({"format": "visualprocessbench", "flags": ["bogus"]}, "flags must be a list of"),
        "images_zip": ({"format": "trl-stepwise", "images_zip": True}, "an images zip goes beside JSON lines only"),
        "body": (["visualprocessbench"], "send a JSON object"),
    }
    for name, (data, message) in refusals.items():
        response = _api_export(admin, project, data)
        assert response.status_code == 400, (name, response.content)
        assert message in response.json()["detail"], (name, response.json())
    assert not Job.objects.exists()


def test_a_visualprm400k_export_offers_internvls_meta_json(admin, project):
    _labelled(project, 3, values=(1, -1))
    job = _export(admin, project, {"format": "visualprm400k", "label_source": "gold", "images_zip": "on"})
    data_name = job.result_file.name.rsplit("/", 1)[-1]
    page = admin.get(f"/projects/{project.id}/jobs/").content.decode()
    assert f"/projects/{project.id}/jobs/{job.id}/download/meta/" in page
    response = admin.get(f"/projects/{project.id}/jobs/{job.id}/download/meta/")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{data_name.rsplit(".", 1)[0]}.meta.json"'
    stem = data_name.rsplit(".", 1)[0]
    assert response.json() == {stem: {"root": "images/", "annotation": data_name, "data_augment": False,
                                      "repeat_time": 1, "length": 3}}
    assert job.counts["records_written"] == len(_download(admin, project, job).splitlines()) == 3
    # The images zip unzips into that root: every image a record names is in it.
    images = zipfile.ZipFile(io.BytesIO(_download(admin, project, job, "images/"))).namelist()
    for line in _download(admin, project, job).splitlines():
        assert json.loads(line)["image"] in images
    # Formats InternVL does not read this way have none.
    other = _export(admin, project, {"format": "visualprocessbench", "label_source": "gold"})
    assert admin.get(f"/projects/{project.id}/jobs/{other.id}/download/meta/").status_code == 404
    assert f"/jobs/{other.id}/download/meta/" not in admin.get(f"/projects/{project.id}/jobs/").content.decode()
