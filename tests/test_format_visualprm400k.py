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
from prm.core.prompts import PRM_SYSTEM_PROMPT, VISUALPRM_SYSTEM_PROMPT

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
        "num_mc_sequences": max(total for *_, total in steps),  # rollouts per step
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
    # A dataset's counts were sampled exhaustively: recorded as such, so their scores are read as mc_i.
    assert set(AutoLabel.objects.filter(kind="mc").values_list("estimate", flat=True)) == {"imported_counts"}
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

    item = Item.objects.get(project=project, metadata__id="mmpr-17")
    assert item.data_source == "MMPR" and item.answer == "5"
    assert sorted(len(key) for key in item.solutions.values_list("key", flat=True)) == [16, 18]
    assert Item.objects.filter(project=project, metadata__id=42).exists()
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


def with_image_placeholders(record: dict) -> dict:
    """`record` as export writes it: one <image> per image in the first human turn, where it had none."""
    record = json.loads(json.dumps(record))
    image = record.get("image")
    count = 0 if not image else (len(image) if isinstance(image, list) else 1)
    first = next(turn for turn in record["conversations"] if turn["from"] == "human")
    if "<image>" not in first["value"]:
        first["value"] = first["value"].replace("### Question:\n", "### Question:\n" + "<image>\n" * count, 1)
    return record


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

    # Exact, except that image rows get the <image> placeholders InternVL's loader requires.
    assert same_json(export_lines(project, "visualprm400k"), [with_image_placeholders(r) for r in CONVERSATIONS])
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
        # The prompt the policy saw, with one <image> per image.
        assert turns[1]["value"].startswith("### Question:\n" + "<image>\n" * len(raw["image"] if isinstance(raw["image"], list) else [1]))
        assert f"{raw['question_orig']}\nAnswer the question using a single word or phrase.\n\n### Solution Process:\n" in turns[1]["value"]
        assert internvl_image_count_ok(record)
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
    assert labels({"neutral": "negative"}) == ["+", "-", "-"]
    # A solution with unlabelled steps (no human labels here) is not written.
    assert export_lines(project, "visualprm400k", filters=ExportFilters(label_source="human")) == []


def _bad_score(record):
    record["steps_with_score"][1]["score"] = 1.5


def _more_correct_than_total(record):
    record["steps_with_score"][0]["num_mc_correct"] = 17


def _no_total(record):
    record["steps_with_score"][2]["num_mc_total"] = 0


def _not_sampled_with_right_rollouts(record):
    record["steps_with_score"][1].update(score=0.0, num_mc_correct=0, num_mc_total=16)
    record["steps_with_score"][2].update(score=0.0, num_mc_correct=3, num_mc_total=0)


def _negative_count(record):
    record["steps_with_score"][2]["num_mc_correct"] = -1


@pytest.mark.parametrize(
    ("spoil", "field", "message"),
    [
        (_bad_score, "steps_with_score[1].score", "outside [0, 1]"),
        (_more_correct_than_total, "steps_with_score[0].num_mc_correct", "more than were sampled"),
        (_no_total, "steps_with_score[2].num_mc_total", "no earlier step scored 0"),
        (_not_sampled_with_right_rollouts, "steps_with_score[2].num_mc_correct", "not sampled"),
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


# --- records exactly as OpenGVLab's released pipeline writes them ---
# visualprm_data_pieline.py writes Raw: the source item's keys, then response, steps_with_score,
# num_mc_sequences (16) and question_orig; `question` becomes the instructed prompt with "<image>\n"
# at its head. With its default early stop, the steps after the first zero carry 0 of 0.
# visualprm_data_pipeline_postprocess.py turns each Raw record into a conversation: id -1, the
# released system prompt, "### Question:\n{Raw question}\n\n### Solution Process:\n{step}", "+" iff score > 0.

INSTRUCTION_HEAD = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, and when you're "
    'ready to answer, please use the format "Final answer: .."\n\nQuestion:\n\n'
)


def writer_raw(image, question: str, answer: str, steps: list[tuple[str, int]], *, early_stop: bool = True) -> dict:
    """A Raw record as the pipeline writes it: `steps` are (text, right rollouts of 16)."""
    scored, stopped = [], False
    for text, right in steps:
        if stopped:
            scored.append({"step": text, "score": 0.0, "num_mc_correct": 0, "num_mc_total": 0})
            continue
        scored.append({"step": text, "score": right / 16, "num_mc_correct": right, "num_mc_total": 16})
        stopped = early_stop and right == 0
    return {
        "image": image,
        "question": "<image>\n" + INSTRUCTION_HEAD + question,
        "answer": answer,
        "response": "\n\n".join(text for text, _ in steps),
        "steps_with_score": scored,
        "num_mc_sequences": 16,
        "question_orig": question,
    }


def writer_conversation(raw: dict, *, early_stop: bool = False) -> dict:
    """The postprocess writer's PRM conversation for a Raw record."""
    turns = [{"from": "system", "value": VISUALPRM_SYSTEM_PROMPT}]
    for position, entry in enumerate(raw["steps_with_score"]):
        text = entry["step"]
        if position == 0:
            text = f"### Question:\n{raw['question']}\n\n### Solution Process:\n{text}"
        turns += [{"from": "human", "value": text}, {"from": "gpt", "value": "+" if entry["score"] > 0 else "-"}]
        if early_stop and entry["score"] <= 0:
            break
    return {"id": -1, "image": raw["image"], "conversations": turns}


CHORD_QUESTION = "AB is a chord of circle O with OA = 5 and AB = 8. How far is O from AB?"
WRITER_RAW = [
    # Four responses to one question, the pipeline's default; the policy repeated one of them.
    writer_raw("geoqa/1.png", CHORD_QUESTION, "3", [("Half of AB is 4.", 16), ("By Pythagoras, 5^2 - 4^2 = 9.", 12),
                                                    ("Final answer: 3", 12)]),
    writer_raw("geoqa/1.png", CHORD_QUESTION, "3", [("Half of AB is 4.", 16), ("So the distance is 5 - 4 = 1.", 0),
                                                    ("Then it doubles to 2.", 0), ("Final answer: 2", 0)]),
    writer_raw("geoqa/1.png", CHORD_QUESTION, "3", [("The distance is 3 by the 3-4-5 triangle.", 14),
                                                    ("Final answer: 3", 16)]),
    writer_raw("geoqa/1.png", CHORD_QUESTION, "3", [("Half of AB is 4.", 16), ("So the distance is 5 - 4 = 1.", 0),
                                                    ("Then it doubles to 2.", 0), ("Final answer: 2", 0)]),
    writer_raw("chart/3.png", "Which bar is tallest?", "B", [("Bar B reaches 7.", 9), ("Final answer: B", 10)]),
]


def item_counts() -> tuple[int, int, int]:
    return Item.objects.count(), Solution.objects.count(), Step.objects.count()


def test_writer_conversations_import_with_id_minus_one_and_repeated_responses(project, tmp_path, image_folder):
    conversations = [writer_conversation(raw) for raw in WRITER_RAW]
    path = write_jsonl(tmp_path / "geoqa_prm.jsonl", conversations)
    result = dataset_import(project=project, format_name="visualprm400k", path=path, images=image_folder)

    assert (result.items_created, result.solutions_created) == (2, 5)
    item = Item.objects.get(project=project, item_images__source_path="geoqa/1.png")
    # No literal <image> in the question: processors add their own image tokens.
    assert item.question == INSTRUCTION_HEAD + CHORD_QUESTION
    assert item.metadata["prompt"] == WRITER_RAW[0]["question"]
    assert item.solutions.count() == 4
    # The released system prompt is recognised, not copied into every solution.
    assert all("system_prompt" not in s.metadata for s in Solution.objects.all())
    assert same_json(export_lines(project, "visualprm400k"), conversations)
    again = dataset_import(project=project, format_name="visualprm400k", path=path, images=image_folder)
    assert (again.solutions_created, again.solutions_existing) == (0, 5)


def test_raw_and_conversation_records_of_one_question_land_on_one_item(project, tmp_path, image_folder):
    raw_path = write_jsonl(tmp_path / "geoqa.jsonl", WRITER_RAW)
    conv_path = write_jsonl(tmp_path / "geoqa_prm.jsonl", [writer_conversation(raw) for raw in WRITER_RAW])
    dataset_import(project=project, format_name="visualprm400k-raw", path=raw_path, images=image_folder)
    counts = item_counts()
    assert counts[:2] == (2, 5)
    second = dataset_import(project=project, format_name="visualprm400k", path=conv_path, images=image_folder)
    # Same items and, the responses being the same, the same solutions.
    assert (second.items_created, second.items_existing, second.solutions_created, second.solutions_existing) == (0, 2, 0, 5)
    assert item_counts() == counts
    assert Item.objects.get(item_images__source_path="geoqa/1.png").question == CHORD_QUESTION


def test_early_stopped_raw_steps_import_as_not_sampled_and_export_back(project, tmp_path, image_folder):
    path = write_jsonl(tmp_path / "geoqa.jsonl", WRITER_RAW)
    dataset_import(project=project, format_name="visualprm400k-raw", path=path, images=image_folder)

    stopped = Solution.objects.filter(response=WRITER_RAW[1]["response"]).order_by("id").first()
    labels = dict(AutoLabel.objects.filter(step__solution=stopped, kind="mc").values_list("step__index", "num_total"))
    assert labels == {0: 16, 1: 16}  # steps 2 and 3 were not sampled: no estimate, not a measured 0
    assert Step.objects.filter(solution=stopped).count() == 4
    assert same_json(export_lines(project, "visualprm400k-raw"), WRITER_RAW)

    # As conversations from the MC labels: up to and including the first "-", as the writer's --early-stop does.
    exported = export_lines(project, "visualprm400k", filters=ExportFilters(label_source="mc"))
    by_step = {record["conversations"][1]["value"]: record for record in exported}
    expected = writer_conversation(WRITER_RAW[1], early_stop=True)
    assert by_step[expected["conversations"][1]["value"]]["conversations"][1:] == expected["conversations"][1:]


def test_raw_export_writes_rollouts_per_step_not_their_sum(project, tmp_path, image_folder):
    conversations = [writer_conversation(raw) for raw in WRITER_RAW[4:]]
    dataset_import(project=project, format_name="visualprm400k", path=write_jsonl(tmp_path / "c.jsonl", conversations),
                   images=image_folder)
    for step in Step.objects.all():  # counts from Stepmark's own MC job, 16 rollouts a step
        AutoLabel.objects.create(step=step, kind="mc", source="mc-job", score=0.5, num_correct=8, num_total=16)
    [raw] = export_lines(project, "visualprm400k-raw")
    assert raw["num_mc_sequences"] == 16
    assert raw["question"] == WRITER_RAW[4]["question"] and raw["question_orig"] == INSTRUCTION_HEAD + "Which bar is tallest?"


def internvl_image_count_ok(row: dict) -> bool:
    """InternVL's fine-tuning loader: the <image> placeholders in human turns must match the images."""
    image = row.get("image")
    images = 0 if not image else (len(image) if isinstance(image, list) else 1)
    placeholders = sum(turn["value"].count("<image>") for turn in row["conversations"] if turn["from"] == "human")
    return placeholders == images


def test_every_visualprm400k_export_row_passes_internvl_image_count(project, tmp_path, image_folder):
    from tests.test_format_visualprocessbench import vpb_record, write_vpb

    png = (image_folder / "geoqa/1.png").read_bytes()
    vpb = [
        vpb_record(["images/a.png"], "What is x?", ["x = 2.", "Answer: B"], [1, -1]),
        vpb_record(["images/a.png", "images/b.png"], "Compare them.", ["Left is larger.", "Answer: A"], [1, 0]),
    ]
    dataset_import(project=project, format_name="visualprocessbench",
                   path=write_vpb(tmp_path / "vpb", vpb, {"images/a.png": png, "images/b.png": png}))
    dataset_import(project=project, format_name="visualprm400k-raw",
                   path=write_jsonl(tmp_path / "raw.jsonl", WRITER_RAW + RAW_RECORDS[2:]), images=image_folder)
    dataset_import(project=project, format_name="visualprm400k", path=write_jsonl(tmp_path / "c.jsonl", CONVERSATIONS),
                   images=image_folder)
    text_only = conversation("t-1", None, "What is 2 + 2?", [("2 + 2 = 4.", "+")])
    del text_only["image"]
    dataset_import(project=project, format_name="visualprm400k", path=write_jsonl(tmp_path / "t.jsonl", [text_only]))

    rows = export_lines(project, "visualprm400k")
    assert len(rows) == 2 + 5 + 1 + 4 + 1
    assert [row["id"] for row in rows if not internvl_image_count_ok(row)] == []
    two_images = next(row for row in rows if row["conversations"][1]["value"].startswith("### Question:\n<image>\n<image>\nCompare"))
    assert two_images["image"] == ["images/a.png", "images/b.png"]
    assert "<image>" not in next(row for row in rows if row["id"] == "t-1")["conversations"][1]["value"]


def test_neutral_option_and_first_error_rows_in_conversations(project, tmp_path, image_folder):
    from tests.test_format_visualprocessbench import vpb_record, write_vpb

    png = (image_folder / "geoqa/1.png").read_bytes()
    dataset_import(project=project, format_name="visualprocessbench", path=write_vpb(
        tmp_path / "vpb", [vpb_record(["images/a.png"], "q", ["s1", "s2", "s3"], [1, 0, -1])], {"images/a.png": png}))

    def labels(neutral):
        [row] = export_lines(project, "visualprm400k", options={"neutral": neutral})
        return [turn["value"] for turn in row["conversations"][2::2]]

    assert labels("positive") == ["+", "+", "-"]
    assert labels("negative") == ["+", "-", "-"]
    assert labels("skip") == ["+"]  # the row ends before the neutral step
    with pytest.raises(ValueError, match="positive, negative, skip"):
        export_lines(project, "visualprm400k", options={"neutral": "maybe"})
