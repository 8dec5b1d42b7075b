"""The import page: admins upload a dataset, a worker imports it as a job (all or nothing), history with counts.

The runner is called in this process here (tests/test_admin_pages_browser.py drives the page in
Chromium with a real worker process); the uploads go through the page's own view.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Image, ImportRecord, Item, Project, Role, Solution, Step
from tests.factories import add_member, png_bytes
from tests.mathv_sample import mathv_sample, zip_folder
from workers.import_runner import record_estimate
from workers.import_services import staging_folder
from workers.models import Job, JobChunk
from workers.tasks import run_job_chunk

pytestmark = pytest.mark.django_db(transaction=True)


def vpb_record(i: int, *, image: str = "images/a.png", labels=(1, -1)) -> dict:
    return {
        "image": [image], "question": f"Question {i}: what is 2+{i}?", "answer": str(2 + i),
        "response": {"steps": [f"step one of {i}", f"step two of {i}"][: len(labels)], "process_correctness": list(labels)},
        "policy_model": "m", "data_source": "vpb-test",
    }


def vpb_files(records: list[dict], *, images=("images/a.png",)) -> tuple[bytes, bytes]:
    jsonl = "".join(json.dumps(r) + "\n" for r in records).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, name in enumerate(images):
            archive.writestr(name, png_bytes(color=(10 * n, 20, 30)))
    return jsonl, buffer.getvalue()


@pytest.fixture
def admin(client, make_user, project):
    add_member(project, make_user("lead"), Role.ADMIN)
    client.login(username="lead", password="pw-lead")
    return client


def _run_queued_chunks(job: Job) -> None:
    for chunk_id in JobChunk.objects.filter(job=job).values_list("id", flat=True):
        run_job_chunk.apply(args=[chunk_id])


def _start(client, project, data: dict, files: dict):
    return client.post(f"/projects/{project.id}/import/start/", {**data, **files})


def test_the_page_explains_every_format_and_its_options(admin, project):
    from annotation.formats.guide import IMPORT_GUIDE
    from annotation.services.dataset_import import IMPORT_FORMATS

    assert set(IMPORT_GUIDE) == set(IMPORT_FORMATS), "every import format has its guide on the page"
    page = admin.get(f"/projects/{project.id}/import/").content.decode()
    for name, guide in IMPORT_GUIDE.items():
        assert f'id="format-{name}"' in page
        for option in guide.options:
            assert f"<code>{option}</code>" in page
    assert 'enctype="multipart/form-data"' in page


def test_a_visualprocessbench_upload_is_imported_by_the_job_with_counts(admin, project):
    jsonl, images = vpb_files([vpb_record(1), vpb_record(2)])
    response = _start(admin, project, {"format": "visualprocessbench", "option_origin": "my-bench"}, {
        "file": SimpleUploadedFile("test.jsonl", jsonl), "images": SimpleUploadedFile("images.zip", images),
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(kind=Job.Kind.IMPORT, project=project)
    assert job.params["options"] == {"origin": "my-bench"}
    folder = staging_folder(job.params["folder"])
    assert (folder / "test.jsonl").read_bytes() == jsonl, "the upload is saved for the worker"
    _run_queued_chunks(job)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert (job.progress_done, job.progress_total) == (2, 2)
    assert job.counts["solutions_created"] == 2 and job.counts["gold_labels_created"] == 4
    assert Solution.objects.filter(item__project=project).count() == 2
    assert not folder.exists(), "the staged upload is removed once the import ended"
    record = ImportRecord.objects.get(project=project)
    assert record.created_by.username == "lead" and job.params["import_id"] == record.pk
    page = admin.get(f"/projects/{project.id}/import/").content.decode()
    assert f'data-import="{record.pk}"' in page and "solutions created: 2" in page


def test_a_bad_line_is_refused_naming_file_line_and_field_and_nothing_is_left(admin, project):
    bad = vpb_record(2)
    bad["response"]["process_correctness"] = [1, 7]
    jsonl, images = vpb_files([vpb_record(1), bad])
    _start(admin, project, {"format": "visualprocessbench"}, {
        "file": SimpleUploadedFile("my bench.jsonl", jsonl), "images": SimpleUploadedFile("images.zip", images),
    })
    job = Job.objects.get(kind=Job.Kind.IMPORT)
    _run_queued_chunks(job)
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith("my bench.jsonl, line 2, field 'response.process_correctness"), job.error
    assert not Item.objects.exists() and not Solution.objects.exists() and not Step.objects.exists()
    assert not Image.objects.exists() and not ImportRecord.objects.exists()
    assert not staging_folder(job.params["folder"]).exists()
    page = admin.get(f"/projects/{project.id}/import/").content.decode()
    assert "line 2, field" in page


def test_a_mathv_folder_zip_is_unpacked_and_imported(admin, project, tmp_path):
    folder = mathv_sample(tmp_path / "math-v-testmini", questions=3)
    archive = zip_folder(folder, tmp_path / "math-v.zip")
    expected = sum(1 for f in (folder / "responses").glob("*.jsonl") for line in f.read_text().splitlines() if line.strip())
    assert record_estimate(folder, format_name="mathv") == expected
    _start(admin, project, {"format": "mathv", "option_data_source": "MATH-V mini"},
           {"file": SimpleUploadedFile("math-v.zip", archive.read_bytes())})
    job = Job.objects.get(kind=Job.Kind.IMPORT)
    _run_queued_chunks(job)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert Item.objects.filter(project=project, data_source="MATH-V mini").count() == 3
    assert Solution.objects.filter(item__project=project).count() == expected == job.progress_total
    assert Image.objects.count() == 3


@pytest.mark.parametrize(
    ("data", "files", "field", "message"),
    [
        ({"format": "visualprocessbench", "option_max_steps": "4"}, {"file": "x.jsonl"}, "option_max_steps", "takes no option"),
        ({"format": "mathv"}, {"file": "x.jsonl"}, "file", "upload a zip"),
        ({"format": "mathv", "option_max_steps": "zero"}, {"file": "x.zip"}, "option_max_steps", "whole number"),
        ({"format": "nope"}, {"file": "x.jsonl"}, "format", "Select a valid choice"),
        ({"format": "processbench"}, {}, "file", "required"),
    ],
)
def test_a_form_error_sits_next_to_its_field_and_starts_nothing(admin, project, data, files, field, message):
    uploads = {key: SimpleUploadedFile(name, b"{}\n") for key, name in files.items()}
    response = _start(admin, project, data, uploads)
    assert response.status_code == 400
    form = response.context["form"]
    assert message in " ".join(form.errors[field])
    assert not Job.objects.exists() and not (staging_folder("x").parent.exists() and any(staging_folder("x").parent.iterdir()))


@pytest.mark.parametrize("who", ["anonymous", "outsider", "annotator", "reviewer", "other_admin", "staff"])
def test_only_the_projects_admins_and_staff_may_import(client, make_user, project, who):
    other = Project.objects.create(name="other")
    if who != "anonymous":
        user = make_user(who, staff=who == "staff")
        if who in ("annotator", "reviewer"):
            add_member(project, user, who)
        elif who == "other_admin":
            add_member(other, user, Role.ADMIN)
        client.login(username=who, password="pw-" + who)
    jsonl, images = vpb_files([vpb_record(1)])
    page = client.get(f"/projects/{project.id}/import/")
    response = client.post(f"/projects/{project.id}/import/start/", {
        "format": "visualprocessbench", "file": SimpleUploadedFile("t.jsonl", jsonl),
        "images": SimpleUploadedFile("images.zip", images),
    })
    if who == "staff":
        assert page.status_code == 200 and response.status_code == 302
        assert Job.objects.filter(kind=Job.Kind.IMPORT, project=project).count() == 1
        return
    expected = {"anonymous": 302, "annotator": 403, "reviewer": 403}.get(who, 404)
    assert page.status_code == expected and response.status_code == expected
    assert not Job.objects.exists(), "a refused upload starts nothing"
    root = staging_folder("x").parent
    assert not root.exists() or not any(root.iterdir()), "and saves no file"
