"""POST/GET /api/projects/<id>/imports/ and GET /api/projects/<id>/exports/<format>/."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.urls import path, reverse
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from annotation import api_urls
from annotation.api.streaming import CHUNK_BYTES, stream_job
from annotation.models import AutoLabel, GoldLabel, Image, ImportRecord, Item, Project, Solution, Step
from annotation.services.dataset_export import export_module
from tests.factories import add_member, make_solution
from tests.mathv_sample import mathv_sample, zip_folder

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(project, make_user):
    """Everyone who might knock on a project's door, each a logged-in client (None: anonymous)."""
    roles = {}
    for role in ("admin", "reviewer", "annotator"):
        user = make_user(f"{role}-user")
        add_member(project, user, role)
        roles[role] = user
    roles["outsider"] = make_user("outsider")
    roles["staff"] = make_user("staff-user", staff=True)
    clients = {}
    for name, user in roles.items():
        client = APIClient()
        client.force_login(user)
        clients[name] = client
    clients["anonymous"] = APIClient()
    return clients


def imports_url(project_id: int) -> str:
    return reverse("api:project-imports", kwargs={"project_id": project_id})


def export_url(project_id: int, format_name: str) -> str:
    return reverse("api:project-export", kwargs={"project_id": project_id, "format_name": format_name})


def mathv_upload(tmp_path: Path, *, questions: int = 2, extra_response: str = "") -> SimpleUploadedFile:
    folder = mathv_sample(tmp_path / "math-v-sample", questions=questions)
    if extra_response:
        with (folder / "responses" / "Gemini-Pro-CoT.jsonl").open("a") as handle:
            handle.write(extra_response)
    archive = zip_folder(folder, tmp_path / "math-v-sample.zip")
    return SimpleUploadedFile("math-v-sample.zip", archive.read_bytes(), content_type="application/zip")


def db_state() -> tuple:
    return tuple(model.objects.count() for model in (Item, Solution, Step, Image, GoldLabel, ImportRecord))


def media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("method,url", [
    ("post", lambda p: imports_url(p)),
    ("get", lambda p: imports_url(p)),
    ("get", lambda p: export_url(p, "visualprocessbench")),
])
def test_it_validates_ownership(people, project, tmp_path, method, url):
    def call(who):
        data = {"format": "mathv", "file": mathv_upload(tmp_path / who, questions=1)} if method == "post" else None
        kwargs = {"data": data, "format": "multipart"} if method == "post" else {}
        return getattr(people[who], method)(url(project.pk), **kwargs)

    assert call("outsider").status_code == 404
    assert call("annotator").status_code == 403
    assert call("reviewer").status_code == 403
    assert call("anonymous").status_code in (401, 403)
    assert getattr(people["admin"], method)(url(project.pk + 1000)).status_code == 404  # no such project
    assert Item.objects.count() == 0 and ImportRecord.objects.count() == 0


def test_admin_imports_a_zipped_mathv_folder_and_lists_it(people, project, tmp_path):
    response = people["admin"].post(
        imports_url(project.pk), {"format": "mathv", "file": mathv_upload(tmp_path)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["items_created"] == 2 and body["solutions_created"] == 10 and body["images_created"] == 2
    record = ImportRecord.objects.get(pk=body["import_id"])
    assert record.project == project and record.created_by.username == "admin-user"
    assert record.source_name == "math-v-sample"
    assert Solution.objects.filter(item__project=project).count() == 10
    listed = people["admin"].get(imports_url(project.pk)).json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == record.pk and listed["results"][0]["created_by"] == "admin-user"
    assert listed["results"][0]["counts"]["solutions_created"] == 10


def test_staff_may_import_without_membership_and_options_reach_the_parser(people, project, tmp_path):
    response = people["staff"].post(
        imports_url(project.pk),
        {"format": "mathv", "file": mathv_upload(tmp_path), "options": json.dumps({"max_steps": 2})},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert max(s.steps.count() for s in Solution.objects.filter(item__project=project)) <= 2


def test_bad_record_gives_400_naming_file_line_field_and_changes_nothing(people, project, tmp_path, settings):
    make_solution(project, "existing", ["a", "b"])
    before, files_before = db_state(), media_files(settings)
    upload = mathv_upload(tmp_path, extra_response='{"id": "404", "model": "m", "response": "x"}\n')
    response = people["admin"].post(imports_url(project.pk), {"format": "mathv", "file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "error": "no question with id '404' in testmini.jsonl",
        "file": "responses/Gemini-Pro-CoT.jsonl",
        "line": 3,
        "field": "id",
    }
    assert db_state() == before and media_files(settings) == files_before


def test_jsonl_upload_with_an_images_zip_imports_gold_labels(people, project):
    from tests.factories import png_bytes

    record = {
        "image": ["images/a.png"], "question": "What is 2+3?", "answer": "5",
        "response": {"steps": ["2+3=5", "So 5."], "process_correctness": [1, 0]},
        "policy_model": "m", "data_source": "unit",
    }
    images = io.BytesIO()
    with zipfile.ZipFile(images, "w") as archive:
        archive.writestr("images/a.png", png_bytes())
    response = people["admin"].post(
        imports_url(project.pk),
        {
            "format": "visualprocessbench",
            "file": SimpleUploadedFile("test.jsonl", (json.dumps(record) + "\n").encode()),
            "images": SimpleUploadedFile("images.zip", images.getvalue()),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["gold_labels_created"] == 2 and response.json()["images_created"] == 1
    assert sorted(GoldLabel.objects.values_list("value", flat=True)) == [0, 1]
    assert ImportRecord.objects.get().source_name == "test.jsonl"


def test_bad_upload_and_bad_form_fields_give_400(people, project):
    not_zip = SimpleUploadedFile("data.zip", b"not a zip")
    response = people["admin"].post(imports_url(project.pk), {"format": "mathv", "file": not_zip}, format="multipart")
    assert response.status_code == 400 and response.json()["field"] == "file" and response.json()["file"] == "data.zip"
    jsonl = SimpleUploadedFile("x.jsonl", b"{}\n")
    response = people["admin"].post(imports_url(project.pk), {"format": "no-such", "file": jsonl}, format="multipart")
    assert response.status_code == 400 and "format" in response.json()
    jsonl.seek(0)
    response = people["admin"].post(
        imports_url(project.pk), {"format": "mathv", "file": jsonl, "options": "[1, 2]"}, format="multipart"
    )
    assert response.status_code == 400 and "options" in response.json()
    assert ImportRecord.objects.count() == 0


def gold_labelled(project: Project) -> None:
    for external_id, labels in (("q1", [1, -1]), ("q2", [1, 0, 1])):
        solution = make_solution(project, external_id, [f"{external_id} step {i}" for i in range(len(labels))])
        for step, value in zip(solution.steps.order_by("index"), labels, strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="test")
    make_solution(project, "q3", ["unlabelled a", "unlabelled b"])


def body_of(response) -> bytes:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content)


def test_export_streams_the_file_with_its_type_and_filters(people, project):
    gold_labelled(project)
    response = people["admin"].get(export_url(project.pk, "visualprocessbench"), {"label_source": "gold"})
    assert response.status_code == 200
    assert response["Content-Type"] == export_module("visualprocessbench").MEDIA_TYPE
    assert response["Content-Disposition"] == 'attachment; filename="test-project-visualprocessbench.jsonl"'
    rows = [json.loads(line) for line in body_of(response).decode().splitlines()]
    # q3 has no labels, and VisualProcessBench labels every step, so it is left out.
    assert [row["response"]["process_correctness"] for row in rows] == [[1, -1], [1, 0, 1]]
    adjudicated = people["staff"].get(
        export_url(project.pk, "visualprocessbench"), {"label_source": "gold", "only_adjudicated": "true"},
        HTTP_ACCEPT="application/octet-stream",
    )
    assert adjudicated.status_code == 200 and body_of(adjudicated) == b""  # every gold label here was imported
    later = people["admin"].get(export_url(project.pk, "visualprocessbench"), {"since": "2999-01-01"})
    assert body_of(later) == b""


def test_export_with_images_is_a_zip_of_the_data_file_and_images_zip(people, project):
    gold_labelled(project)
    response = people["admin"].get(export_url(project.pk, "visualprocessbench"), {"images": "1"})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="test-project-visualprocessbench.zip"'
    with zipfile.ZipFile(io.BytesIO(body_of(response))) as outer:
        names = outer.namelist()
        assert names == ["test-project-visualprocessbench.jsonl", "images.zip"]
        assert len(outer.read(names[0]).decode().splitlines()) == 2
        with zipfile.ZipFile(io.BytesIO(outer.read("images.zip"))) as images:
            assert sorted(images.namelist()) == ["images/q1.png", "images/q2.png"]
            assert images.read("images/q1.png").startswith(b"\x89PNG")


def test_raw_export_carries_monte_carlo_counts(people, project):
    solution = make_solution(project, "q1", ["a", "b"])
    for step, right in zip(solution.steps.order_by("index"), (12, 0), strict=True):
        AutoLabel.objects.create(step=step, kind="mc", source="mc", score=right / 16, num_correct=right, num_total=16)
    make_solution(project, "q2", ["no counts"])
    response = people["admin"].get(export_url(project.pk, "visualprm400k-raw"))
    assert response.status_code == 200 and ".jsonl" in response["Content-Disposition"]
    rows = [json.loads(line) for line in body_of(response).decode().splitlines()]
    assert len(rows) == 1
    assert [s["num_mc_correct"] for s in rows[0]["steps_with_score"]] == [12, 0]
    assert rows[0]["steps_with_score"][0]["score"] == 0.75


def test_export_rejects_unknown_formats_and_bad_filters(people, project):
    assert people["admin"].get(export_url(project.pk, "no-such-format")).status_code == 404
    response = people["admin"].get(export_url(project.pk, "visualprocessbench"), {"label_source": "guess"})
    assert response.status_code == 400 and "label_source" in response.json()


def test_stream_job_yields_before_the_records_run_out_and_reraises_failures():
    produced = []

    def records():
        for number in range(2000):
            produced.append(number)
            yield number

    def job(passes, out):
        for _ in passes[0]:
            out.write(b"x" * (CHUNK_BYTES // 4))

    chunks = stream_job(records=records, passes=1, job=job)
    first = next(chunks)
    assert len(first) >= CHUNK_BYTES and len(produced) < 2000  # streaming, not buffered whole
    assert sum(len(c) for c in chunks) + len(first) == 2000 * (CHUNK_BYTES // 4)

    def failing(passes, out):
        next(passes[0])
        raise ValueError("exporter broke")

    with pytest.raises(ValueError, match="exporter broke"):
        list(stream_job(records=records, passes=1, job=failing))

    # A download closed half way stops the exporter thread instead of leaving it waiting.
    before = threading.active_count()
    abandoned = stream_job(records=records, passes=1, job=job)
    next(abandoned)
    abandoned.close()
    for thread in threading.enumerate():
        if thread.name == "export-stream":
            thread.join(timeout=5)
    assert threading.active_count() <= before


def test_schema_generates_without_warnings_for_these_views(people):
    assert people["anonymous"].get("/api/schema/").status_code in (200, 401, 403)
    assert people["staff"].get("/api/schema/").status_code == 200
    mine = [p for p in api_urls.urlpatterns if p.name in ("project-imports", "project-export")]
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=[path("api/", include_patterns(mine))]).get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._warn_cache)
    assert set(schema["paths"]) == {
        "/api/projects/{project_id}/imports/",
        "/api/projects/{project_id}/exports/{format_name}/",
    }


def include_patterns(patterns):
    from django.urls import include

    return include((patterns, "api"))


def test_parquet_export_streams_a_readable_file(people, project):
    import pyarrow.parquet as pq

    gold_labelled(project)
    response = people["admin"].get(export_url(project.pk, "trl-stepwise"), {"label_source": "gold"})
    assert response.status_code == 200 and response["Content-Type"] == export_module("trl-stepwise").MEDIA_TYPE
    table = pq.read_table(io.BytesIO(body_of(response)))
    assert table.column("labels").to_pylist() == [[True, False], [True, True, True]]  # neutral counts as right


def test_export_takes_neutral_and_file_format(people, project):
    gold_labelled(project)
    url = export_url(project.pk, "trl-stepwise")
    response = people["admin"].get(url, {"label_source": "gold", "file_format": "jsonl", "neutral": "negative"})
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    assert response["Content-Disposition"] == 'attachment; filename="test-project-trl-stepwise.jsonl"'
    rows = [json.loads(line) for line in body_of(response).decode().splitlines()]
    assert [row["labels"] for row in rows] == [[True, False], [True, False, True]]
    refused = people["admin"].get(export_url(project.pk, "visualprm400k"), {"file_format": "parquet"})
    assert refused.status_code == 400 and "writes jsonl, not parquet" in refused.json()["file_format"][0]
    assert people["admin"].get(url, {"neutral": "maybe"}).status_code == 400


def test_visualprm400k_download_with_images_holds_internvl_meta_json(people, project):
    gold_labelled(project)
    response = people["admin"].get(export_url(project.pk, "visualprm400k"), {"images": "1", "label_source": "gold"})
    with zipfile.ZipFile(io.BytesIO(body_of(response))) as outer:
        assert outer.namelist() == ["test-project-visualprm400k.jsonl", "meta.json", "images.zip"]
        rows = [json.loads(line) for line in outer.read("test-project-visualprm400k.jsonl").decode().splitlines()]
        meta = json.loads(outer.read("meta.json"))
    assert meta == {"test-project-visualprm400k": {
        "root": "images/", "annotation": "test-project-visualprm400k.jsonl", "data_augment": False, "repeat_time": 1,
        "length": len(rows),
    }}
    assert all(row["conversations"][1]["value"].startswith("### Question:\n<image>\n") for row in rows)
