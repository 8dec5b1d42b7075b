"""VisualProcessBench (test.jsonl + images.zip): import, export, exact round trips."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image as PILImage

from annotation.formats import visualprocessbench
from annotation.models import GoldLabel, Image, ImportRecord, Item, ItemImage, Solution, Step
from annotation.selectors import ExportFilters, export_records
from annotation.services.dataset_export import dataset_export
from annotation.services.dataset_import import dataset_import

pytestmark = pytest.mark.django_db


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def vpb_record(image: list[str], question: str, steps: list[str], labels: list[int], *, policy_model: str = "GPT-4o",
               answer: str = "B", data_source: str = "MathVerse") -> dict:
    """A record exactly as docs/DESIGN.md gives the format, keys in its order."""
    return {
        "image": image,
        "question": question,
        "answer": answer,
        "response": {"steps": steps, "process_correctness": labels},
        "policy_model": policy_model,
        "data_source": data_source,
    }


def write_vpb(folder: Path, records: list[dict], images: dict[str, bytes]) -> Path:
    """test.jsonl beside images.zip, as the dataset ships; returns the jsonl path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test.jsonl"
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    with zipfile.ZipFile(folder / "images.zip", "w") as archive:
        for name, data in images.items():
            archive.writestr(name, data)
    return path


RED, BLUE, GREEN = png((200, 0, 0)), png((0, 0, 200)), png((0, 160, 0))
IMAGES = {
    "images/MathVerse/1.png": RED,
    "images/MathVerse/2.png": BLUE,
    "images/DynaMath/2-copy.png": BLUE,  # same bytes under another path: one stored Image
    "images/WeMath/3.png": GREEN,
}
RECORDS = [
    vpb_record(["images/MathVerse/1.png"], "What is the area of the triangle?",
               ["The base is 4 and the height is 3.", "Area = 4 * 3 = 12.", "So the answer is B."], [1, -1, -1]),
    vpb_record(["images/MathVerse/1.png"], "What is the area of the triangle?",
               ["Area is half base times height.", "That is 6.", "Answer: A"], [1, 1, 1], policy_model="InternVL2.5-8B"),
    vpb_record(["images/MathVerse/2.png", "images/DynaMath/2-copy.png"], "Are the two figures congruent?\nA. yes\nB. no",
               ["Look at both figures.", "They have equal sides.", "Hmm, angles unclear.", "So yes, A."], [0, 1, 0, 1],
               answer="A", data_source="DynaMath"),
    # The same image as the first item, another question: another item sharing the picture.
    vpb_record(["images/MathVerse/1.png"], "What is the perimeter?", ["3 + 4 + 5 = 12", "The answer is 12"], [1, 1],
               answer="12"),
    vpb_record(["images/WeMath/3.png"], "Which shape is green? 数学", ["The square is green.", "Answer: C"], [-1, 0],
               answer="C", data_source="WeMath", policy_model="Qwen2.5-VL-7B"),
]


def export_vpb(project, **filters) -> tuple[list[dict], dict[str, bytes], int]:
    out = io.BytesIO()
    count = dataset_export(project=project, format_name="visualprocessbench", out=out, filters=ExportFilters(**filters))
    lines = [json.loads(line) for line in out.getvalue().decode("utf-8").splitlines()]
    archive_bytes = io.BytesIO()
    visualprocessbench.write_images(export_records(project=project, filters=ExportFilters(**filters)), archive_bytes)
    with zipfile.ZipFile(io.BytesIO(archive_bytes.getvalue())) as archive:
        images = {name: archive.read(name) for name in archive.namelist()}
    return lines, images, count


def test_import_stores_items_solutions_steps_and_gold(project, tmp_path):
    path = write_vpb(tmp_path / "vpb", RECORDS, IMAGES)
    result = dataset_import(project=project, format_name="visualprocessbench", path=path)
    assert result.items_created == 4  # records 1 and 2 share an item
    assert result.solutions_created == 5 and result.steps_created == 14 and result.gold_labels_created == 14
    assert Image.objects.count() == 3  # four paths, three distinct files
    assert ItemImage.objects.count() == 5
    shared = Item.objects.get(question="What is the area of the triangle?")
    assert shared.solutions.count() == 2 and shared.data_source == "MathVerse" and shared.answer == "B"
    solution = shared.solutions.get(policy_model="GPT-4o")
    assert solution.response == "The base is 4 and the height is 3.\n\nArea = 4 * 3 = 12.\n\nSo the answer is B."
    assert list(GoldLabel.objects.filter(step__solution=solution).order_by("step__index").values_list("value", flat=True)) == [1, -1, -1]
    assert set(GoldLabel.objects.values_list("source", "origin")) == {("imported", "VisualProcessBench")}
    two_images = Item.objects.get(data_source="DynaMath")
    assert list(two_images.item_images.order_by("position").values_list("source_path", flat=True)) == [
        "images/MathVerse/2.png", "images/DynaMath/2-copy.png"]


def test_round_trip_gives_back_the_same_records_and_images(project, tmp_path):
    path = write_vpb(tmp_path / "vpb", RECORDS, IMAGES)
    dataset_import(project=project, format_name="visualprocessbench", path=path)
    lines, images, count = export_vpb(project)
    assert count == len(RECORDS)
    assert lines == RECORDS  # same objects, same line order
    assert list(lines[0]) == ["image", "question", "answer", "response", "policy_model", "data_source"]
    assert images == IMAGES


def test_extra_keys_and_numeric_answers_survive_the_round_trip(project, tmp_path):
    unusual = vpb_record(["images/WeMath/3.png"], "How many sides?", ["A square has 4 sides."], [1], answer="4")
    unusual["answer"] = 4
    unusual["id"] = "wemath-17"
    unusual["response"]["judge"] = {"model": "human", "round": 2}
    # Same item as `unusual`, but a string answer and another data source written on this line.
    sibling = vpb_record(["images/WeMath/3.png"], "How many sides?", ["Four."], [1], answer="four", data_source="Other")
    path = write_vpb(tmp_path / "vpb", [unusual, sibling], {"images/WeMath/3.png": GREEN})
    dataset_import(project=project, format_name="visualprocessbench", path=path)
    assert Item.objects.count() == 1
    lines, _, _ = export_vpb(project)
    assert lines == [unusual, sibling]


def test_reimport_creates_nothing_new(project, tmp_path):
    path = write_vpb(tmp_path / "vpb", RECORDS, IMAGES)
    dataset_import(project=project, format_name="visualprocessbench", path=path)
    before = [model.objects.count() for model in (Item, ItemImage, Image, Solution, Step, GoldLabel)]
    again = dataset_import(project=project, format_name="visualprocessbench", path=path)
    assert again.items_created == 0 and again.solutions_created == 0 and again.images_created == 0
    assert again.solutions_existing == 5
    assert [model.objects.count() for model in (Item, ItemImage, Image, Solution, Step, GoldLabel)] == before
    assert ImportRecord.objects.count() == 2


def test_exported_file_reimports_into_a_new_project_identically(project, tmp_path):
    from annotation.models import Project

    path = write_vpb(tmp_path / "vpb", RECORDS, IMAGES)
    dataset_import(project=project, format_name="visualprocessbench", path=path)
    lines, images, _ = export_vpb(project)
    second = Project.objects.create(name="copy")
    dataset_import(project=second, format_name="visualprocessbench", path=write_vpb(tmp_path / "again", lines, images))
    assert sorted(Item.objects.filter(project=second).values_list("external_id", flat=True)) == sorted(
        Item.objects.filter(project=project).values_list("external_id", flat=True))
    assert export_vpb(second)[0] == RECORDS


def test_origin_option_names_the_gold_labels(project, tmp_path):
    path = write_vpb(tmp_path / "vpb", RECORDS[:1], IMAGES)
    dataset_import(project=project, format_name="visualprocessbench", path=path, options={"origin": "VPB-v2"})
    assert set(GoldLabel.objects.values_list("origin", flat=True)) == {"VPB-v2"}


def test_solution_with_an_unlabelled_step_is_not_exported(project, tmp_path):
    path = write_vpb(tmp_path / "vpb", RECORDS, IMAGES)
    dataset_import(project=project, format_name="visualprocessbench", path=path)
    GoldLabel.objects.filter(step__solution__item__data_source="WeMath", step__index=1).delete()
    lines, images, count = export_vpb(project)
    assert count == 4 and lines == RECORDS[:4]
    assert "images/WeMath/3.png" not in images and "images/MathVerse/1.png" in images
