"""Bad encodings and content (issue 15, items 6 and 12): refused naming file, line and field; never a 500.

Each case runs through the REST upload (the web path an attacker has) and compares the database
before and after; the command line prints the same one-line error and exits non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from annotation.models import GoldLabel, Image, ImportRecord, Item, ItemImage, Project, Solution, Step
from stepmark.env import database_url
from tests.factories import add_member
from tests.test_format_visualprocessbench import png, vpb_record

pytestmark = pytest.mark.django_db

GOOD = vpb_record(["images/a.png"], "A fine question", ["A fine step.", "Done."], [1, 1])


def db_state() -> dict:
    tables = (Item, ItemImage, Image, Solution, Step, GoldLabel, ImportRecord)
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in tables}


@pytest.fixture
def admin_api(project, make_user):
    user = make_user("project-admin")
    add_member(project, user, "admin")
    client = APIClient()
    client.force_login(user)
    return client


def images_zip() -> SimpleUploadedFile:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images/a.png", png((10, 20, 30)))
    return SimpleUploadedFile("images.zip", buffer.getvalue())


def upload(client, project, content: bytes, *, name="test.jsonl", options: dict | None = None):
    data = {"format": "visualprocessbench", "file": SimpleUploadedFile(name, content), "images": images_zip()}
    if options is not None:
        data["options"] = json.dumps(options)
    return client.post(f"/api/projects/{project.pk}/imports/", data, format="multipart")


def line(record: dict, **kwargs) -> bytes:
    return (json.dumps(record, **kwargs) + "\n").encode()


def good_then(bad: bytes) -> bytes:
    return line(GOOD) + bad


def with_steps(steps: list[str]) -> dict:
    return vpb_record(["images/a.png"], "q", steps, [1] * len(steps))


CASES = {
    "utf-16": (("\ufeff" + json.dumps(GOOD) + "\n").encode("utf-16-le"), 1, None, "UTF-16"),
    "utf-16-no-bom": ((json.dumps(GOOD) + "\n").encode("utf-16-le"), 1, None, "UTF-16"),
    "latin-1": (good_then(json.dumps(with_steps(["café au lait"]), ensure_ascii=False).encode("latin-1") + b"\n"), 2,
                "response.steps", "not UTF-8"),
    "lone-surrogate": (good_then(b'{"question": "q\\ud800", "image": ["images/a.png"]}\n'), 2, "question", "lone surrogate"),
    "nul-in-step": (good_then(line(with_steps(["fine", "bad\u0000step"]))), 2, "response.steps[1]", "NUL"),
    "deep-nesting": (good_then(b"[" * 200_000 + b"]" * 200_000 + b"\n"), 2, None, "nested too deeply"),
    "long-data-source": (good_then(line({**with_steps(["s"]), "data_source": "x" * 300})), 2, "data_source",
                         "200"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_content_is_a_400_naming_file_line_field(admin_api, project, case):
    content, line_number, field, message = CASES[case]
    before = db_state()
    response = upload(admin_api, project, content)
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert (body["file"], body["line"], body["field"]) == ("test.jsonl", line_number, field), body
    assert message in body["error"]
    assert db_state() == before


def test_a_valid_surrogate_pair_and_a_utf8_bom_are_fine(admin_api, project):
    emoji = vpb_record(["images/a.png"], "Smile \\ud83d\\ude00", ["ok"], [1])
    content = b"\xef\xbb\xbf" + json.dumps(emoji).replace("\\\\ud83d\\\\ude00", "\\ud83d\\ude00").encode() + b"\n"
    response = upload(admin_api, project, content)
    assert response.status_code == 201, response.content
    assert Item.objects.get(project=project).question == "Smile \U0001f600"


@pytest.mark.parametrize("limit_name, record, field", [
    ("STEPMARK_MAX_QUESTION_CHARS", vpb_record(["images/a.png"], "q" * 101, ["s"], [1]), "question"),
    ("STEPMARK_MAX_STEP_CHARS", vpb_record(["images/a.png"], "q", ["s", "t" * 101], [1, 1]), "steps[1]"),
])
def test_texts_past_the_limits_are_refused(admin_api, project, settings, limit_name, record, field):
    setattr(settings, limit_name, 100)
    before = db_state()
    response = upload(admin_api, project, good_then(line(record)))
    assert response.status_code == 400
    body = response.json()
    assert (body["line"], body["field"]) == (2, field) and "more than the 100 allowed" in body["error"]
    assert db_state() == before


@pytest.fixture
def mathv_zip(tmp_path):
    from tests.mathv_sample import mathv_sample, zip_folder

    archive = zip_folder(mathv_sample(tmp_path / "mv", questions=1), tmp_path / "mv.zip")
    return archive.read_bytes()


@pytest.mark.parametrize("value", ["abc", 0, -3, True, 1.5])
def test_a_bad_max_steps_is_a_400_naming_the_option(admin_api, project, mathv_zip, value):
    before = db_state()
    data = {"format": "mathv", "file": SimpleUploadedFile("mv.zip", mathv_zip), "options": json.dumps({"max_steps": value})}
    response = admin_api.post(f"/api/projects/{project.pk}/imports/", data, format="multipart")
    assert response.status_code == 400
    assert response.json()["field"] == "options.max_steps" and "max_steps" in response.json()["error"]
    assert db_state() == before


def run_cli(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "MEDIA_ROOT": django_settings.MEDIA_ROOT,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "import_dataset", *args],
        cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", ["utf-16", "latin-1", "lone-surrogate", "deep-nesting", "empty", "max-steps"])
def test_the_command_prints_one_line_and_exits_nonzero(tmp_path, case):
    project = Project.objects.create(name="cli project")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "images.zip").write_bytes(images_zip().read())
    path = folder / "test.jsonl"
    options: list[str] = []
    if case == "empty":
        path.write_bytes(b"")
        expected = "test.jsonl: the file is empty"
    elif case == "max-steps":
        path.write_bytes(line(GOOD))
        fmt_folder = tmp_path / "mv"
        from tests.mathv_sample import mathv_sample

        path = mathv_sample(fmt_folder, questions=1)
        options = ["--option", "max_steps=abc"]
        expected = "option 'max_steps' must be a whole number"
    else:
        path.write_bytes(CASES[case][0])
        expected = CASES[case][3]
    fmt = "mathv" if case == "max-steps" else "visualprocessbench"
    before = db_state()
    finished = run_cli(tmp_path, "--project", project.name, "--format", fmt, *options, str(path))
    assert finished.returncode != 0
    assert "Traceback" not in finished.stderr, finished.stderr[-2000:]
    errors = [text for text in finished.stderr.splitlines() if text.startswith("CommandError")]
    assert len(errors) == 1 and expected in errors[0], finished.stderr[-2000:]
    assert db_state() == before


def test_a_300_character_data_source_option_is_refused(admin_api, project, mathv_zip):
    before = db_state()
    data = {"format": "mathv", "file": SimpleUploadedFile("mv.zip", mathv_zip), "options": json.dumps({"data_source": "x" * 300})}
    response = admin_api.post(f"/api/projects/{project.pk}/imports/", data, format="multipart")
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "data_source" and body["line"] == 1 and "more than the 200 allowed" in body["error"]
    assert db_state() == before
