"""import_dataset, export_dataset and demo_setup, run as an operator would."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from annotation.models import GoldLabel, ImportRecord, Item, Membership, Project, Solution, Step
from stepmark.env import database_url
from tests.factories import make_solution
from tests.mathv_sample import mathv_sample

pytestmark = pytest.mark.django_db

BAD_RESPONSE = '{"id": "9", "model": "m", "response": "a", "model_answer": "2", "correct": true}\n'


def bad_mathv_folder(tmp_path: Path) -> Path:
    folder = mathv_sample(tmp_path / "bad", questions=2)
    with (folder / "responses" / "Gemini-Pro-CoT.jsonl").open("a") as handle:
        handle.write(BAD_RESPONSE)  # line 3: no question with id 9
    return folder


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_dataset_imports_mathv_and_prints_counts(project, tmp_path):
    folder = mathv_sample(tmp_path / "mv", questions=3)
    out, _ = run("import_dataset", "--project", project.name, "--format", "mathv", str(folder))
    assert Item.objects.filter(project=project).count() == 3
    assert Solution.objects.filter(item__project=project).count() == 15
    assert "items created: 3" in out and "solutions created: 15" in out
    record = ImportRecord.objects.get(project=project)
    assert f"import {record.pk}" in out and record.counts["solutions_created"] == 15
    again, _ = run("import_dataset", "--project", project.name, "--format", "mathv", str(folder))
    assert "solutions created: 0" in again and "solutions existing: 15" in again


def test_import_dataset_passes_options_and_creates_project_on_request(db, tmp_path):
    folder = mathv_sample(tmp_path / "mv", questions=2)
    with pytest.raises(CommandError, match="no project named 'fresh'"):
        run("import_dataset", "--project", "fresh", "--format", "mathv", str(folder))
    run("import_dataset", "--project", "fresh", "--create-project", "--format", "mathv", "--option", "max_steps=2", str(folder))
    project = Project.objects.get(name="fresh")
    steps_per_solution = [s.steps.count() for s in Solution.objects.filter(item__project=project)]
    assert len(steps_per_solution) == 10 and max(steps_per_solution) <= 2


def test_import_dataset_bad_record_is_a_command_error_naming_file_line_field(project, tmp_path):
    folder = bad_mathv_folder(tmp_path)
    with pytest.raises(CommandError) as caught:
        run("import_dataset", "--project", project.name, "--format", "mathv", str(folder))
    assert "responses/Gemini-Pro-CoT.jsonl, line 3, field 'id'" in str(caught.value)
    assert (Item.objects.count(), Solution.objects.count(), Step.objects.count(), ImportRecord.objects.count()) == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_import_dataset_bad_record_exits_nonzero_from_the_shell(tmp_path):
    # A real process on the test database: the exit status is what scripts and CI see.
    project = Project.objects.create(name="shell project")
    folder = bad_mathv_folder(tmp_path)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "MEDIA_ROOT": django_settings.MEDIA_ROOT,
    }
    finished = subprocess.run(
        [sys.executable, "manage.py", "import_dataset", "--project", project.name, "--format", "mathv", str(folder)],
        cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert finished.returncode != 0
    assert "responses/Gemini-Pro-CoT.jsonl, line 3, field 'id'" in finished.stderr
    assert Item.objects.count() == 0


def labelled_project(project: Project) -> Project:
    for external_id, labels in (("q1", [1, -1]), ("q2", [1, 0, 1])):
        solution = make_solution(project, external_id, [f"step {i}" for i in range(len(labels))])
        for step, value in zip(solution.steps.order_by("index"), labels, strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="test")
    make_solution(project, "q3", ["unlabelled a", "unlabelled b"])
    return project


def test_export_dataset_writes_file_images_and_applies_filters(project, tmp_path):
    labelled_project(project)
    out, images = tmp_path / "test.jsonl", tmp_path / "images.zip"
    printed, _ = run(
        "export_dataset", "--project", project.name, "--format", "visualprocessbench",
        "--out", str(out), "--images-zip", str(images), "--label-source", "gold",
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["response"]["process_correctness"] for row in rows] == [[1, -1], [1, 0, 1]]
    assert "Wrote 2 solutions" in printed
    with zipfile.ZipFile(images) as archive:  # q3 is unlabelled, so neither it nor its image is exported
        assert sorted(archive.namelist()) == ["images/q1.png", "images/q2.png"]
    run("export_dataset", "--project", project.name, "--format", "visualprm400k", "--out", str(out))
    assert len(out.read_text().splitlines()) == 2
    run("export_dataset", "--project", project.name, "--format", "visualprm400k", "--out", str(out), "--only-adjudicated")
    assert out.read_text() == ""  # every gold label here was imported, none adjudicated
    run("export_dataset", "--project", project.name, "--format", "visualprocessbench", "--out", str(out), "--since", "2999-01-01")
    assert out.read_text() == ""


def test_export_dataset_rejects_unknown_project_and_bad_dates(project, tmp_path):
    with pytest.raises(CommandError, match="no project named"):
        run("export_dataset", "--project", "nope", "--format", "visualprocessbench", "--out", str(tmp_path / "x"))
    with pytest.raises(CommandError, match="not a date"):
        run("export_dataset", "--project", project.name, "--format", "visualprocessbench", "--out", str(tmp_path / "x"), "--since", "yesterday")


@pytest.fixture
def demo_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.STEPMARK_DEMO_DATA_DIR = tmp_path / "data"
    settings.STEPMARK_DEFAULT_BACKBONE = tmp_path / "var" / "models" / "tiny"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
    return settings


def test_demo_setup_is_idempotent_and_its_printed_passwords_work(demo_settings, tmp_path):
    mathv_sample(tmp_path / "data" / "math-v-testmini", questions=2)
    first, _ = run("demo_setup")
    accounts = (tmp_path / "var" / "demo-accounts.txt").read_text()
    second, _ = run("demo_setup")
    assert (tmp_path / "var" / "demo-accounts.txt").read_text() == accounts
    project = Project.objects.get(name="MATH-V testmini (demo)")
    assert project.overlap == 2
    assert Item.objects.filter(project=project).count() == 2 and Solution.objects.filter(item__project=project).count() == 10
    assert ImportRecord.objects.filter(project=project).count() == 1  # the second run imported nothing
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"demo-annotator": "annotator", "demo-reviewer": "reviewer", "demo-admin": "admin"}
    for line in accounts.splitlines():
        name, password = line.split(" ")
        assert f"{name} / {password}" in first and f"{name} / {password}" in second
        assert authenticate(username=name, password=password) is not None
    assert "http://" in second
    admin = get_user_model().objects.get(username="demo-admin")
    assert admin.is_staff and admin.has_perm("annotation.view_project")
    assert not get_user_model().objects.get(username="demo-annotator").is_staff
    # A tiny local model is built once, for trying the workers and training without downloads.
    assert (tmp_path / "var" / "models" / "tiny" / "config.json").exists()
    assert "Built a tiny local model" in first and "Tiny local model:" in second


def test_demo_setup_without_data_notes_it_and_still_creates_accounts(demo_settings):
    out, _ = run("demo_setup")
    assert "no demo data" in out
    assert Project.objects.get(name="MATH-V testmini (demo)").items.count() == 0
    assert get_user_model().objects.filter(username__startswith="demo-").count() == 3


def test_demo_setup_carries_on_when_the_demo_data_is_broken(demo_settings, tmp_path):
    folder = mathv_sample(tmp_path / "data" / "math-v-testmini", questions=1)
    (folder / "responses" / "Gemini-Pro-CoT.jsonl").write_text(BAD_RESPONSE)
    out, err = run("demo_setup")
    assert "could not be imported" in err and "responses/Gemini-Pro-CoT.jsonl, line 1, field 'id'" in err
    assert "demo-admin / " in out
    assert Item.objects.count() == 0 and ImportRecord.objects.count() == 0


def test_export_dataset_trl_file_kind_follows_the_suffix_or_the_flag(project, tmp_path):
    import pyarrow.parquet as pq

    labelled_project(project)
    jsonl = tmp_path / "train.jsonl"
    run("export_dataset", "--project", project.name, "--format", "trl-stepwise", "--out", str(jsonl), "--label-source", "gold")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]  # JSON lines, not parquet bytes
    assert [row["labels"] for row in rows] == [[True, False], [True, True, True]]
    run("export_dataset", "--project", project.name, "--format", "trl-stepwise", "--out", str(jsonl),
        "--label-source", "gold", "--neutral", "negative")
    assert [json.loads(line)["labels"] for line in jsonl.read_text().splitlines()][1] == [True, False, True]

    parquet = tmp_path / "train.parquet"
    run("export_dataset", "--project", project.name, "--format", "trl-stepwise", "--out", str(parquet), "--label-source", "gold")
    assert pq.read_table(parquet).num_rows == 2
    named = tmp_path / "train.data"
    run("export_dataset", "--project", project.name, "--format", "trl-stepwise", "--out", str(named), "--file-format", "jsonl")
    assert len(named.read_text().splitlines()) == 2

    for out, extra, message in (
        (jsonl, ["--format", "trl-stepwise", "--file-format", "parquet"], "ends in .jsonl but the file format asked for is parquet"),
        (parquet, ["--format", "trl-stepwise", "--file-format", "jsonl"], "ends in .parquet but the file format asked for is jsonl"),
        (parquet, ["--format", "visualprm400k"], "visualprm400k writes jsonl only"),
        (jsonl, ["--format", "visualprm400k", "--file-format", "parquet"], "visualprm400k writes jsonl, not parquet"),
    ):
        before = out.read_bytes()
        with pytest.raises(CommandError, match=message):
            run("export_dataset", "--project", project.name, "--out", str(out), *extra)
        assert out.read_bytes() == before  # refused before writing anything


def test_export_dataset_visualprm400k_writes_internvl_meta_json_beside_it(project, tmp_path):
    from PIL import Image as PILImage

    labelled_project(project)
    out, images = tmp_path / "prm" / "train.jsonl", tmp_path / "prm" / "images.zip"
    out.parent.mkdir()
    printed, _ = run(
        "export_dataset", "--project", project.name, "--format", "visualprm400k", "--out", str(out),
        "--images-zip", str(images), "--label-source", "gold",
    )
    meta = json.loads((tmp_path / "prm" / "train.meta.json").read_text())
    assert list(meta) == ["train"] and "train.meta.json" in printed
    entry = meta["train"]
    assert set(entry) == {"root", "annotation", "data_augment", "repeat_time", "length"}
    assert entry["annotation"] == str(out.resolve()) and entry["annotation"].endswith("jsonl")
    assert entry["root"] == str(tmp_path / "prm" / "images") + "/"
    assert (entry["data_augment"], entry["repeat_time"]) == (False, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert entry["length"] == len(rows) == 2
    # As InternVL's loader does: root joined with each row's image, one <image> per image in the human turns.
    with zipfile.ZipFile(images) as archive:
        archive.extractall(entry["root"])
    for row in rows:
        with PILImage.open(os.path.join(entry["root"], row["image"])) as picture:
            assert picture.size[0] > 0
        assert sum(turn["value"].count("<image>") for turn in row["conversations"] if turn["from"] == "human") == 1
