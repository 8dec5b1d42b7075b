"""VisualPRM400K-v1.1-Raw and VisualPRM400K conversations: import, export, exact round trips, bad input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image as PILImage

from annotation.formats.records import DatasetImportError
from annotation.models import AutoLabel, GoldLabel, Image, Item, ItemImage, Solution, Step
from annotation.selectors import ExportFilters
from annotation.services.dataset_export import dataset_export
from annotation.services.dataset_import import dataset_import
from prm.core.prompts import PRM_SYSTEM_PROMPT

pytestmark = pytest.mark.django_db

GEOMETRY_PROMPT = (
    "<image>\nAs shown in the figure, AB is the diameter of circle O and angle ABC = 30°. Find angle BAC.\n"
    "Answer the question using a single word or phrase."
)
GEOMETRY_QUESTION = "As shown in the figure, AB is the diameter of circle O and angle ABC = 30°. Find angle BAC."


def raw_record(image, question_orig: str, steps: list[tuple[str, float, int, int]], *, answer="60°", **extra) -> dict:
    """A Raw record exactly as docs/DESIGN.md gives it: prompt, original question, response = steps joined by a blank line."""
    return {
        "image": image,
        "question": "<image>\n" + question_orig + "\nAnswer the question using a single word or phrase.",
        "question_orig": question_orig,
        "answer": answer,
        "response": "\n\n".join(text for text, *_ in steps),
        "steps_with_score": [
            {"step": text, "score": score, "num_mc_correct": right, "num_mc_total": total}
            for text, score, right, total in steps
        ],
        "num_mc_sequences": sum(total for *_, total in steps),
        **extra,
    }


def conversation(record_id, image, question: str, steps: list[tuple[str, str]], *, system=PRM_SYSTEM_PROMPT, image_token=False) -> dict:
    turns = [{"from": "system", "value": system}] if system is not None else []
    for position, (text, label) in enumerate(steps):
        if position == 0:
            text = ("<image>\n" if image_token else "") + f"### Question:\n{question}\n\n### Solution Process:\n{text}"
        turns += [{"from": "human", "value": text}, {"from": "gpt", "value": label}]
    return {"id": record_id, "image": image, "conversations": turns}


def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, colour).save(path, format="PNG")
    return path.read_bytes()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


def export_lines(project, format_name: str, *, filters: ExportFilters | None = None, options: dict | None = None) -> list[dict]:
    out = io.BytesIO()
    count = dataset_export(project=project, format_name=format_name, out=out, filters=filters, options=options)
    lines = out.getvalue().decode("utf-8").splitlines()
    assert len(lines) == count
    return [json.loads(line) for line in lines]


def same_json(left: list[dict], right: list[dict]) -> bool:
    """Equal as JSON text (key order aside): 1 and 1.0 differ here, unlike in Python's ==."""
    def canonical(records):
        return [json.dumps(record, sort_keys=True, ensure_ascii=False) for record in records]

    return canonical(left) == canonical(right)


def row_counts() -> tuple[int, ...]:
    return (
        Item.objects.count(), ItemImage.objects.count(), Solution.objects.count(), Step.objects.count(),
        AutoLabel.objects.count(), GoldLabel.objects.count(), Image.objects.count(),
    )


def media_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    write_png(folder / "geoqa/1.png", (12, 8), (200, 30, 30))
    write_png(folder / "geoqa/2.png", (9, 9), (30, 200, 30))
    write_png(folder / "chart/3.png", (7, 5), (30, 30, 200))
    return folder


RAW_RECORDS = [
    raw_record(
        "geoqa/1.png",
        GEOMETRY_QUESTION,
        [
            ("Since AB is a diameter, angle ACB = 90°.", 0.5625, 9, 16),
            ("The angles of triangle ABC sum to 180°, so angle BAC = 180° - 90° - 30°.", 0.1, 1, 10),
            ("Angle BAC = 60°.\n\nAnswer: 60°", 0.0, 0, 16),
        ],
    ),
    # A second sampled solution of the same question: same item.
    raw_record(
        "geoqa/1.png",
        GEOMETRY_QUESTION,
        [("Angle ACB is inscribed in a semicircle, so it is 90°.", 1.0, 16, 16), ("So angle BAC = 60°. Answer: 60°", 0.9375, 15, 16)],
    ),
    raw_record(
        ["geoqa/2.png", "chart/3.png"],
        "Which bar in Image-2 matches the area of the square in Image-1?",
        [("The square has side 3, area 9.", 0.3333333333333333, 1, 3), ("Bar C reaches 9. Answer: C", 0.6666666666666666, 2, 3)],
        answer="C",
    ),
]


def test_raw_round_trip_is_exact_and_stores_mc_counts(project, tmp_path, image_folder):
    path = write_jsonl(tmp_path / "geoqa.jsonl", RAW_RECORDS)
    result = dataset_import(project=project, format_name="visualprm400k-raw", path=path, images=image_folder)

    assert (result.items_created, result.solutions_created, result.steps_created, result.auto_labels_created) == (2, 3, 7, 7)
    assert result.images_created == 3
    item = Item.objects.get(project=project, question=GEOMETRY_QUESTION)
    assert item.solutions.count() == 2
    assert item.metadata["prompt"] == RAW_RECORDS[0]["question"] and item.answer == "60°"
    assert item.data_source == "geoqa"  # the file's name when the record names none
    first = item.solutions.order_by("id").first()
    assert first.response == RAW_RECORDS[0]["response"]
    labels = list(
        AutoLabel.objects.filter(step__solution=first).order_by("step__index").values_list("kind", "source", "score", "num_correct", "num_total")
    )
    assert labels == [
        ("mc", "VisualPRM400K-v1.1-Raw", 0.5625, 9, 16),
        ("mc", "VisualPRM400K-v1.1-Raw", 0.1, 1, 10),
        ("mc", "VisualPRM400K-v1.1-Raw", 0.0, 0, 16),
    ]
    two_images = Item.objects.get(project=project, answer="C")
    assert list(two_images.item_images.values_list("source_path", flat=True)) == ["geoqa/2.png", "chart/3.png"]

    assert same_json(export_lines(project, "visualprm400k-raw"), RAW_RECORDS)

    counts = row_counts()
    again = dataset_import(project=project, format_name="visualprm400k-raw", path=path, images=image_folder)
    assert (again.items_created, again.solutions_created, again.solutions_existing) == (0, 0, 3)
    assert row_counts() == counts


def test_raw_keeps_ids_extras_integer_scores_and_repeated_responses(project, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("images/mmpr/a.png", write_png(tmp_path / "png/a.png", (6, 6), (1, 2, 3)))
    steps = [("The triangle is isosceles.", 1, 4, 4), ("Answer: 5", 0.75, 3, 4)]
    records = [
        raw_record(["mmpr/a.png"], "How long is side x?", steps, answer=5, id="mmpr-17", data_source="MMPR", difficulty="hard"),
        # The policy sampled the same response twice: a second solution, not a duplicate error.
        raw_record(["mmpr/a.png"], "How long is side x?", steps, answer=5, id="mmpr-17", data_source="MMPR", difficulty="hard"),
        raw_record("mmpr/a.png", "Is the triangle isosceles?", [("Two sides are equal. Answer: yes", 1.0, 8, 8)], answer="yes", id=42),
    ]
    records[0]["steps_with_score"][1]["rollouts"] = ["... 5", "... 6"]
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    dataset_import(project=project, format_name="visualprm400k-raw", path=path, images=archive, options={"source": "mc-run-3"})

    item = Item.objects.get(project=project, external_id="mmpr-17")
    assert item.data_source == "MMPR" and item.answer == "5"
    assert sorted(len(key) for key in item.solutions.values_list("key", flat=True)) == [16, 18]
    assert Item.objects.filter(project=project, external_id="42").exists()
    assert set(AutoLabel.objects.values_list("source", flat=True)) == {"mc-run-3"}
    assert same_json(export_lines(project, "visualprm400k-raw"), records)


def test_raw_export_skips_solutions_without_mc_counts(project, tmp_path, image_folder):
    path = write_jsonl(tmp_path / "raw.jsonl", RAW_RECORDS[:2])
    dataset_import(project=project, format_name="visualprm400k-raw", path=path, images=image_folder)
    AutoLabel.objects.filter(step__solution__key=Solution.objects.order_by("id").first().key, step__index=2).delete()
    assert same_json(export_lines(project, "visualprm400k-raw"), [RAW_RECORDS[1]])


CONVERSATIONS = [
    conversation(
        "geoqa-1-a", "geoqa/1.png", GEOMETRY_QUESTION,
        [("Since AB is a diameter, angle ACB = 90°.", "+"), ("So angle BAC = 90° + 30° = 120°.", "-"), ("Answer: 120°", "-")],
    ),
    conversation("geoqa-1-b", "geoqa/1.png", GEOMETRY_QUESTION, [("Angle ACB = 90°, so BAC = 60°.", "+")], image_token=True),
    conversation(
        "chart-3", ["geoqa/2.png", "chart/3.png"], "Which bar matches?",
        [("The square has area 9.", "+"), ("Bar C. Answer: C", "+")],
        system="Judge each step: reply + or -.",
    ),
    conversation(7, ["chart/3.png"], "What is the tallest bar?", [("Bar A is tallest.", "+")], system=None),
]


def test_conversation_round_trip_is_exact(project, tmp_path, image_folder):
    path = write_jsonl(tmp_path / "visualprm400k.jsonl", CONVERSATIONS)
    result = dataset_import(project=project, format_name="visualprm400k", path=path, images=image_folder)

    assert (result.items_created, result.solutions_created, result.steps_created, result.auto_labels_created) == (3, 4, 7, 7)
    item = Item.objects.get(project=project, question=GEOMETRY_QUESTION)
    assert sorted(item.solutions.values_list("key", flat=True)) == ["geoqa-1-a", "geoqa-1-b"]
    first = item.solutions.get(key="geoqa-1-a")
    assert list(first.steps.order_by("index").values_list("text", flat=True))[0] == "Since AB is a diameter, angle ACB = 90°."
    assert list(AutoLabel.objects.filter(step__solution=first).order_by("step__index").values_list("kind", "source", "value")) == [
        ("imported", "VisualPRM400K", 1), ("imported", "VisualPRM400K", -1), ("imported", "VisualPRM400K", -1),
    ]
    # The standard system prompt is not copied into every solution; a different one is kept.
    assert "system_prompt" not in first.metadata
    assert Solution.objects.get(key="chart-3").metadata["system_prompt"] == "Judge each step: reply + or -."

    assert same_json(export_lines(project, "visualprm400k"), CONVERSATIONS)
    assert export_lines(project, "visualprm400k-raw") == []  # no MC counts to write

    counts = row_counts()
    again = dataset_import(project=project, format_name="visualprm400k", path=path, images=image_folder)
    assert (again.items_created, again.solutions_created, again.solutions_existing) == (0, 0, 4)
    assert row_counts() == counts


def test_raw_exported_as_conversations_labels_plus_iff_mc_positive(project, tmp_path, image_folder):
    dataset_import(project=project, format_name="visualprm400k-raw", path=write_jsonl(tmp_path / "raw.jsonl", RAW_RECORDS), images=image_folder)
    exported = export_lines(project, "visualprm400k", filters=ExportFilters(label_source="mc"))

    assert len(exported) == len(RAW_RECORDS)
    for raw, record in zip(RAW_RECORDS, exported, strict=True):
        turns = record["conversations"]
        assert turns[0] == {"from": "system", "value": PRM_SYSTEM_PROMPT}
        assert turns[1]["value"].startswith(f"### Question:\n{raw['question_orig']}\n\n### Solution Process:\n")
        assert [turn["value"] for turn in turns[2::2]] == ["+" if step["score"] > 0 else "-" for step in raw["steps_with_score"]]
        assert [turn["value"] for turn in turns[3::2]] == [step["step"] for step in raw["steps_with_score"][1:]]
        assert record["image"] == raw["image"]


def test_conversation_neutral_label_follows_neutral_as(project, tmp_path, image_folder):
    path = write_jsonl(tmp_path / "c.jsonl", CONVERSATIONS[:1])
    dataset_import(project=project, format_name="visualprm400k", path=path, images=image_folder)
    middle = Step.objects.get(solution__key="geoqa-1-a", index=1)
    GoldLabel.objects.create(step=middle, value=0, source=GoldLabel.Source.IMPORTED, origin="test")

    def labels(options):
        return [turn["value"] for turn in export_lines(project, "visualprm400k", options=options)[0]["conversations"][2::2]]

    assert labels({}) == ["+", "+", "-"]
    assert labels({"neutral_as": "-"}) == ["+", "-", "-"]
    # A solution with unlabelled steps (no human labels here) is not written.
    assert export_lines(project, "visualprm400k", filters=ExportFilters(label_source="human")) == []


def _bad_score(record):
    record["steps_with_score"][1]["score"] = 1.5


def _more_correct_than_total(record):
    record["steps_with_score"][0]["num_mc_correct"] = 17


def _no_total(record):
    record["steps_with_score"][2]["num_mc_total"] = 0


def _negative_count(record):
    record["steps_with_score"][2]["num_mc_correct"] = -1


@pytest.mark.parametrize(
    ("spoil", "field", "message"),
    [
        (_bad_score, "steps_with_score[1].score", "outside [0, 1]"),
        (_more_correct_than_total, "steps_with_score[0].num_mc_correct", "more than were sampled"),
        (_no_total, "steps_with_score[2].num_mc_total", "positive integer"),
        (_negative_count, "steps_with_score[2].num_mc_correct", "non-negative"),
    ],
)
def test_bad_raw_record_names_file_line_field_and_changes_nothing(project, tmp_path, image_folder, spoil, field, message):
    bad = json.loads(json.dumps(RAW_RECORDS[0]))
    spoil(bad)
    path = write_jsonl(tmp_path / "raw.jsonl", [RAW_RECORDS[2], bad])
    with pytest.raises(DatasetImportError) as caught:
        # One record per batch, so the good first record is written before the bad one fails.
        dataset_import(project=project, format_name="visualprm400k-raw", path=path, images=image_folder, batch_size=1)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("raw.jsonl", 2, field)
    assert message in caught.value.message
    assert row_counts() == (0, 0, 0, 0, 0, 0, 0) and media_files() == []


def _gpt_turn_first(record):
    turns = record["conversations"]
    turns[1], turns[2] = turns[2], turns[1]


def _two_human_turns(record):
    record["conversations"][4]["from"] = "human"


def _label_x(record):
    record["conversations"][4]["value"] = "x"


def _no_question_layout(record):
    record["conversations"][1]["value"] = "Question: find BAC. Since AB is a diameter, angle ACB = 90°."


def _unlabelled_last_step(record):
    record["conversations"].pop()


@pytest.mark.parametrize(
    ("spoil", "field", "message"),
    [
        (_gpt_turn_first, "conversations[1].from", "expected a 'human' turn"),
        (_two_human_turns, "conversations[4].from", "expected a 'gpt' turn"),
        (_label_x, "conversations[4].value", "label 'x'"),
        (_no_question_layout, "conversations[1].value", "### Solution Process:"),
        (_unlabelled_last_step, "conversations[6]", "no gpt turn"),
    ],
)
def test_bad_conversation_names_file_line_field_and_changes_nothing(project, tmp_path, image_folder, spoil, field, message):
    bad = json.loads(json.dumps(CONVERSATIONS[0]))
    spoil(bad)
    path = write_jsonl(tmp_path / "conv.jsonl", [CONVERSATIONS[2], bad])
    with pytest.raises(DatasetImportError) as caught:
        # One record per batch, so the good first record is written before the bad one fails.
        dataset_import(project=project, format_name="visualprm400k", path=path, images=image_folder, batch_size=1)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("conv.jsonl", 2, field)
    assert message in caught.value.message
    assert row_counts() == (0, 0, 0, 0, 0, 0, 0) and media_files() == []
