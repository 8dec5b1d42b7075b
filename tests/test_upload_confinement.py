"""Uploads stay inside themselves; stored files are served only through views that check the project.

Attacks from issue 15 (items 1, 2, 11): an upload's options naming files outside it, /media/ URLs
guessed by an anonymous visitor or an outsider, zip bombs and members read whole, export zips
carrying '..' names. Each is refused with the database as before.
"""

from __future__ import annotations

import importlib
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import clear_url_caches
from rest_framework.test import APIClient

from annotation.models import Image, ImportRecord, Item, ItemImage, Solution, Step
from tests.factories import add_member
from tests.mathv_sample import mathv_sample, zip_folder

pytestmark = pytest.mark.django_db


def db_state() -> dict:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in (Item, ItemImage, Image, Solution, Step, ImportRecord)}


@pytest.fixture
def admin_api(project, make_user):
    user = make_user("project-admin")
    add_member(project, user, "admin")
    client = APIClient()
    client.force_login(user)
    return client


def upload_mathv(client, project, folder: Path, tmp_path: Path, options: dict | None = None):
    archive = zip_folder(folder, tmp_path / f"{folder.name}.zip")
    data = {"format": "mathv", "file": SimpleUploadedFile(archive.name, archive.read_bytes())}
    if options is not None:
        data["options"] = json.dumps(options)
    return client.post(f"/api/projects/{project.pk}/imports/", data, format="multipart")


@pytest.fixture
def secret_questions(tmp_path) -> Path:
    """Another project's questions file somewhere on the server, which the upload must not reach."""
    secret = mathv_sample(tmp_path / "other-project", questions=1)
    return secret / "testmini.jsonl"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"questions": "ABSOLUTE"}, id="absolute-questions"),
        pytest.param({"questions": "../../other-project/testmini.jsonl"}, id="dotdot-questions"),
        pytest.param({"responses": "ABSOLUTE-DIR"}, id="absolute-responses"),
        pytest.param({"responses": "../../other-project/responses"}, id="dotdot-responses"),
    ],
)
def test_options_naming_files_outside_the_upload_are_refused(admin_api, project, tmp_path, secret_questions, options):
    options = {
        key: str(secret_questions) if value == "ABSOLUTE" else str(secret_questions.parent / "responses") if value == "ABSOLUTE-DIR" else value
        for key, value in options.items()
    }
    folder = mathv_sample(tmp_path / "mine", questions=2)
    before = db_state()
    response = upload_mathv(admin_api, project, folder, tmp_path, options)
    assert response.status_code == 400, response.content
    body = response.json()
    (option,) = options
    assert body["field"] == f"options.{option}" and option in body["error"]
    assert str(tmp_path) not in response.content.decode()  # no server path in the answer
    assert db_state() == before


def test_a_symlink_inside_the_folder_pointing_out_is_refused(tmp_path, project, secret_questions):
    """The zip cannot carry a symlink (members unpack as plain files), but a folder import can: confined, refused."""
    from annotation.formats.records import DatasetImportError
    from annotation.services.dataset_import import dataset_import

    folder = mathv_sample(tmp_path / "mine", questions=1)
    (folder / "linked.jsonl").symlink_to(secret_questions)
    before = db_state()
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="mathv", path=folder, options={"questions": "linked.jsonl"}, confined=True)
    assert caught.value.field == "options.questions" and str(tmp_path) not in str(caught.value)
    assert db_state() == before


def test_a_missing_file_option_is_a_clear_400(admin_api, project, tmp_path):
    folder = mathv_sample(tmp_path / "mine", questions=1)
    before = db_state()
    response = upload_mathv(admin_api, project, folder, tmp_path, {"questions": "nope.jsonl"})
    assert response.status_code == 400
    assert response.json()["field"] == "options.questions" and "nope.jsonl" in response.json()["error"]
    assert db_state() == before


def test_an_option_inside_the_upload_still_works(admin_api, project, tmp_path):
    folder = mathv_sample(tmp_path / "mine", questions=1)
    (folder / "testmini.jsonl").rename(folder / "questions.jsonl")
    (folder / "other.jsonl").write_text("")
    response = upload_mathv(admin_api, project, folder, tmp_path, {"questions": "questions.jsonl"})
    assert response.status_code == 201, response.content
    assert Item.objects.filter(project=project).count() == 1


def test_the_command_line_may_name_a_full_path(tmp_path, project, secret_questions):
    from django.core.management import call_command

    folder = mathv_sample(tmp_path / "mine", questions=1)
    call_command(
        "import_dataset", str(folder), project=project.name, format_name="mathv", option=[f"questions={secret_questions}"]
    )
    assert Item.objects.filter(project=project).count() == 1


# ---------------------------------------------------------------- stored files


@pytest.fixture
def export_job(project, settings):
    """A finished export job with its file stored under MEDIA_ROOT, named as the worker names it."""
    from workers.models import Job

    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, status=Job.Status.DONE, params={"format": "visualprocessbench"})
    job.result_file.save(f"{project.pk}-visualprocessbench-job{job.pk}.jsonl", ContentFile(b'{"secret": 1}\n'))
    return job


@pytest.mark.parametrize("debug", [False, True], ids=["production-like", "debug"])
def test_stored_files_have_no_public_url_in_any_mode(client, make_user, export_job, settings, debug):
    import stepmark.urls

    settings.DEBUG = debug
    importlib.reload(stepmark.urls)  # the URL conf as that mode builds it
    clear_url_caches()
    try:
        media_url = f"/media/{export_job.result_file.name}"
        download = f"/projects/{export_job.project_id}/jobs/{export_job.pk}/download/"
        assert client.get(media_url).status_code == 404  # anonymous
        outsider = make_user("outsider")
        client.force_login(outsider)
        assert client.get(media_url).status_code == 404
        assert client.get(download).status_code == 404
        admin = make_user("the-admin")
        add_member(export_job.project, admin, "admin")
        client.force_login(admin)
        assert client.get(media_url).status_code == 404  # not even for the admin: only the checked view serves it
        response = client.get(download)
        assert response.status_code == 200 and b"".join(response.streaming_content) == b'{"secret": 1}\n'
    finally:
        settings.DEBUG = False
        importlib.reload(stepmark.urls)
        clear_url_caches()


# ---------------------------------------------------------------- zips


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def post_zip(client, project, data: bytes):
    upload = SimpleUploadedFile("bomb.zip", data)
    return client.post(f"/api/projects/{project.pk}/imports/", {"format": "mathv", "file": upload}, format="multipart")


def test_a_zip_bomb_is_refused_by_its_ratio(admin_api, project):
    bomb = zip_bytes({"data/testmini.jsonl": b"{}\n", "data/responses/big.jsonl": b" " * (64 * 1024 * 1024)})
    assert len(bomb) < 200_000
    before = db_state()
    response = post_zip(admin_api, project, bomb)
    assert response.status_code == 400, response.content
    assert "zip bomb" in response.json()["error"] and "big.jsonl" in response.json()["error"]
    assert db_state() == before


def test_an_archive_past_the_total_is_refused(admin_api, project, settings):
    settings.STEPMARK_MAX_UNPACKED_BYTES = 100_000
    archive = zip_bytes({f"data/responses/{n}.jsonl": bytes(range(256)) * 200 for n in range(3)}, zipfile.ZIP_STORED)
    response = post_zip(admin_api, project, archive)
    assert response.status_code == 400 and "more than the allowed 100000 bytes" in response.json()["error"]


@pytest.mark.parametrize("lying", [False, True], ids=["honest-header", "lying-header"])
def test_a_large_member_is_never_read_whole(tmp_path, settings, lying):
    """A 50 MB image member, 1 MB allowed: refused without holding it (honest or lying directory)."""
    from annotation.formats.reading import ImageSource
    from annotation.formats.records import DatasetImportError

    settings.STEPMARK_MAX_IMAGE_BYTES = 1024 * 1024
    settings.STEPMARK_MAX_ZIP_RATIO = 10**6  # the ratio check off: only the size limits may catch it
    path = tmp_path / "images.zip"
    path.write_bytes(zip_bytes({"images/a.png": b"\0" * (50 * 1024 * 1024)}))
    if lying:
        _patch_declared_size(path, "images/a.png", 10)
    source = ImageSource(path)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetImportError) as caught:
            source.read("images/a.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        source.close()
    expected = "cannot be unpacked" if lying else "more than the allowed 1048576 bytes"
    assert expected in str(caught.value) and caught.value.file == "images.zip"
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: the member was read whole"


def _patch_declared_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size a zip declares for `member` (local header and central directory)."""
    import struct

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, size)  # local file header: uncompressed size
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, size)  # central directory: uncompressed size
    path.write_bytes(bytes(data))


def test_exported_zips_never_carry_dotdot_names(project):
    from annotation.formats.archive import images_zip_write
    from annotation.selectors import ExportFilters, export_records
    from tests.factories import make_solution

    solution = make_solution(project, "x1", ["a"])
    ItemImage.objects.filter(item=solution.item).update(source_path="../../../etc/evil.png")
    out = io.BytesIO()
    images_zip_write(records=export_records(project=project, filters=ExportFilters()), out=out)
    assert zipfile.ZipFile(io.BytesIO(out.getvalue())).namelist() == ["etc/evil.png"]
