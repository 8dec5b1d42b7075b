"""Bad VisualProcessBench input: the error names file, line and field, and nothing is left behind.

Every case first imports a valid dataset (so "as before" is not just "empty"), then imports a
file whose first line is valid and new (it writes an item, a solution and an image file before
the bad line is reached, since batches hold one record) and whose later line is bad.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image as PILImage

from annotation.formats.records import DatasetImportError
from annotation.models import AutoLabel, GoldLabel, Image, ImportRecord, Item, ItemImage, Solution, Step
from annotation.services.dataset_import import dataset_import
from tests.test_format_visualprocessbench import IMAGES, RECORDS, png, vpb_record, write_vpb

pytestmark = pytest.mark.django_db

DATA_TABLES = (Item, ItemImage, Image, Solution, Step, GoldLabel, AutoLabel, ImportRecord)
FRESH_IMAGE = png((9, 99, 199), size=(4, 4))
FRESH = vpb_record(["images/new/fresh.png"], "A new question", ["A new step.", "Done."], [1, 1])


def bad_image_record(path: str = "images/new/bad.png") -> dict:
    return vpb_record(["images/new/fresh.png", path], "Which picture is broken?", ["Look.", "This one."], [1, -1])


def png_claiming(width: int, height: int) -> bytes:
    """A real PNG whose header (with a valid checksum) claims `width` x `height` pixels."""
    data = bytearray(png((1, 2, 3)))
    ihdr_start = 8 + 4  # signature, then the chunk length
    data[ihdr_start + 4 : ihdr_start + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_start : ihdr_start + 4 + 13]))
    data[ihdr_start + 17 : ihdr_start + 21] = struct.pack(">I", crc)
    return bytes(data)


def snapshot() -> dict[str, list[dict]]:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in DATA_TABLES}


def media_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()} if root.exists() else set()


@pytest.fixture
def imported(project, tmp_path):
    """A project with a valid import in it; returns (project, its state before the bad import)."""
    dataset_import(project=project, format_name="visualprocessbench", path=write_vpb(tmp_path / "good", RECORDS, IMAGES))
    # A machine label too, so every table compared below holds rows.
    AutoLabel.objects.create(step=Step.objects.first(), kind="mc", source="earlier", score=0.5, num_correct=1, num_total=2)
    assert Item.objects.count() == 4 and media_files()
    return project


def reject(project, folder: Path, lines: list, images: dict[str, bytes]) -> DatasetImportError:
    """Import `lines` (dicts, or raw text for malformed JSON); expect a rejection that leaves no trace."""
    folder.mkdir(parents=True)
    write_vpb(folder, [], {"images/new/fresh.png": FRESH_IMAGE, **images})
    path = folder / "test.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    before, files_before = snapshot(), media_files()
    assert all(before.values())  # "as before" is not "empty"
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="visualprocessbench", path=path, batch_size=1)
    assert snapshot() == before
    assert media_files() == files_before
    error = caught.value
    assert error.file == "test.jsonl" and f"test.jsonl, line {error.line}" in str(error)
    return error


def test_first_valid_line_alone_imports(imported, tmp_path):
    """The control for every case below: without the bad line, the fresh line is stored with its image."""
    folder = tmp_path / "fine"
    path = write_vpb(folder, [FRESH], {"images/new/fresh.png": FRESH_IMAGE})
    files_before = media_files()
    result = dataset_import(project=imported, format_name="visualprocessbench", path=path, batch_size=1)
    assert result.items_created == 1 and result.images_created == 1
    assert len(media_files() - files_before) == 1


def test_malformed_json(imported, tmp_path):
    error = reject(imported, tmp_path / "bad", [FRESH, '{"image": ["images/new/fresh.png"], "question": "q", "answer": '], {})
    assert (error.line, error.field) == (2, "answer")
    assert "malformed JSON" in error.message


@pytest.mark.parametrize("missing", ["image", "question", "answer", "response", "policy_model", "data_source"])
def test_missing_field(imported, tmp_path, missing):
    record = vpb_record(["images/new/fresh.png"], "q", ["s"], [1])
    del record[missing]
    error = reject(imported, tmp_path / "bad", [FRESH, record], {})
    assert (error.line, error.field) == (2, missing)
    assert "missing" in error.message


def test_missing_nested_field(imported, tmp_path):
    record = vpb_record(["images/new/fresh.png"], "q", ["s"], [1])
    del record["response"]["process_correctness"]
    error = reject(imported, tmp_path / "bad", [FRESH, record], {})
    assert (error.line, error.field) == (2, "response.process_correctness")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(image="images/new/fresh.png"), "image"),
        (lambda r: r.update(image=["images/new/fresh.png", 7]), "image[1]"),
        (lambda r: r.update(question=["q"]), "question"),
        (lambda r: r.update(response=["s"]), "response"),
        (lambda r: r["response"].update(steps="one step"), "response.steps"),
        (lambda r: r["response"].update(steps=["fine", {"text": "not a string"}]), "response.steps[1]"),
        (lambda r: r.update(policy_model=3), "policy_model"),
    ],
)
def test_mistyped_field(imported, tmp_path, change, field):
    record = vpb_record(["images/new/fresh.png"], "q", ["s", "t"], [1, 1])
    change(record)
    error = reject(imported, tmp_path / "bad", [FRESH, record], {})
    assert (error.line, error.field) == (2, field)
    assert "expected" in error.message


@pytest.mark.parametrize("value", [2, -2, "1", True, 0.5, None])
def test_label_outside_the_scale(imported, tmp_path, value):
    record = vpb_record(["images/new/fresh.png"], "q", ["s", "t", "u"], [1, 1, 1])
    record["response"]["process_correctness"][2] = value
    error = reject(imported, tmp_path / "bad", [FRESH, record], {})
    assert (error.line, error.field) == (2, "response.process_correctness[2]")


@pytest.mark.parametrize(("steps", "labels"), [(["a", "b", "c"], [1, 1]), (["a"], [1, 0])])
def test_step_and_label_counts_differ(imported, tmp_path, steps, labels):
    error = reject(imported, tmp_path / "bad", [FRESH, vpb_record(["images/new/fresh.png"], "q", steps, labels)], {})
    assert (error.line, error.field) == (2, "response.process_correctness")
    assert f"{len(steps)} steps but {len(labels)} labels" in error.message


def test_no_steps(imported, tmp_path):
    error = reject(imported, tmp_path / "bad", [FRESH, vpb_record(["images/new/fresh.png"], "q", [], [])], {})
    assert (error.line, error.field) == (2, "response.steps")


def test_missing_image(imported, tmp_path):
    error = reject(imported, tmp_path / "bad", [FRESH, bad_image_record("images/new/absent.png")], {})
    assert (error.line, error.field) == (2, "image[1]")
    assert "images/new/absent.png" in error.message and "not found" in error.message


def test_file_that_is_not_an_image(imported, tmp_path):
    error = reject(imported, tmp_path / "bad", [FRESH, bad_image_record()], {"images/new/bad.png": b"just some text\n"})
    assert (error.line, error.field) == (2, "image[1]")
    assert "not an image" in error.message


def test_truncated_image(imported, tmp_path):
    whole = png((40, 80, 120), size=(64, 64))
    error = reject(imported, tmp_path / "bad", [FRESH, bad_image_record()], {"images/new/bad.png": whole[: len(whole) // 2]})
    assert (error.line, error.field) == (2, "image[1]")
    assert "corrupt" in error.message


@pytest.mark.parametrize(
    "side",
    [9_000, 100_000],  # past Stepmark's 64M-pixel limit only; past Pillow's own limit too
)
def test_decompression_bomb_header(imported, tmp_path, side):
    bomb = png_claiming(side, side)
    if side == 9_000:
        assert PILImage.open(io.BytesIO(bomb)).size == (side, side)  # the header really claims it
    error = reject(imported, tmp_path / "bad", [FRESH, bad_image_record()], {"images/new/bad.png": bomb})
    assert (error.line, error.field) == (2, "image[1]")
    assert "decompression bomb" in error.message


def test_image_over_the_configured_pixel_limit(imported, tmp_path, settings):
    settings.STEPMARK_MAX_IMAGE_PIXELS = 20  # the fresh image has 16 pixels, this one 48
    error = reject(imported, tmp_path / "bad", [FRESH, bad_image_record()], {"images/new/bad.png": png((5, 5, 5), size=(8, 6))})
    assert (error.line, error.field) == (2, "image[1]")
    assert "over the limit of 20" in error.message


def test_duplicate_records_in_one_file(imported, tmp_path):
    other = vpb_record(["images/new/fresh.png"], "Another question", ["One.", "Two."], [1, -1])
    duplicate = copy.deepcopy(other)
    duplicate["response"]["process_correctness"] = [1, 1]  # same solution, relabelled: still the same record
    error = reject(imported, tmp_path / "bad", [FRESH, other, duplicate], {})
    assert (error.line, error.field) == (3, "response.steps")
    assert "duplicate" in error.message and "line 2" in error.message
