"""ProcessBench importer on the real GSM8K split (../shared/data/processbench-gsm8k) and on broken copies."""

import json

import pytest

from annotation.formats.processbench import gold_from_first_error
from annotation.formats.records import DatasetImportError
from annotation.models import GoldLabel, ImportRecord, Item, Solution, Step
from annotation.services.dataset_import import dataset_import
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db


def gsm8k_path():
    return shared_data("processbench-gsm8k/gsm8k.json")


def db_counts():
    return (
        Item.objects.count(),
        Solution.objects.count(),
        Step.objects.count(),
        GoldLabel.objects.count(),
        ImportRecord.objects.count(),
    )


def test_processbench_counts_match_the_raw_file(project):
    raw = json.loads(gsm8k_path().read_text())
    with_error = [r for r in raw if r["label"] != -1]
    result = dataset_import(project=project, format_name="processbench", path=gsm8k_path())

    assert result.items_created == result.solutions_created == len(raw) == 400
    assert Step.objects.filter(solution__item__project=project).count() == sum(len(r["steps"]) for r in raw)
    gold = GoldLabel.objects.filter(step__solution__item__project=project)
    # All steps of a correct solution are +1; a wrong one has `label` +1 steps, then its -1.
    expected_positive = sum(len(r["steps"]) for r in raw if r["label"] == -1) + sum(
        r["label"] for r in with_error
    )
    assert gold.filter(value=1).count() == expected_positive
    assert gold.filter(value=-1).count() == len(with_error)
    assert gold.filter(value=0).count() == 0
    assert gold.count() == result.gold_labels_created == expected_positive + len(with_error)
    assert set(gold.values_list("source", "origin").distinct()) == {
        (GoldLabel.Source.IMPORTED, "ProcessBench")
    }
    assert Solution.objects.filter(is_correct=True).count() == sum(r["final_answer_correct"] for r in raw)
    assert set(Item.objects.values_list("data_source", flat=True)) == {"gsm8k"}


def test_processbench_spot_checks(project):
    raw = {r["id"]: r for r in json.loads(gsm8k_path().read_text())}
    dataset_import(project=project, format_name="processbench", path=gsm8k_path())
    item = Item.objects.get(project=project, external_id="gsm8k-0")
    assert item.question.startswith("Sue lives in a fun neighborhood.")
    solution = item.solutions.get()
    assert solution.policy_model == "Qwen2-7B-Instruct"
    assert solution.is_correct is raw["gsm8k-0"]["final_answer_correct"]
    assert [s.text for s in solution.steps.order_by("index")] == raw["gsm8k-0"]["steps"]
    assert solution.response == "\n\n".join(raw["gsm8k-0"]["steps"])
    # A solution whose first error is step 2: +1, +1, -1, then unlabelled.
    wrong_id = next(i for i, r in raw.items() if r["label"] == 2 and len(r["steps"]) > 3)
    wrong = Solution.objects.get(item__external_id=wrong_id)
    values = [
        GoldLabel.objects.filter(step=s).values_list("value", flat=True).first()
        for s in wrong.steps.order_by("index")
    ]
    assert values == [1, 1, -1] + [None] * (len(raw[wrong_id]["steps"]) - 3)
    assert wrong.metadata == {"first_error_step": 2}


def test_processbench_reimport_creates_nothing(project):
    dataset_import(project=project, format_name="processbench", path=gsm8k_path())
    before = db_counts()
    again = dataset_import(project=project, format_name="processbench", path=gsm8k_path())
    assert (again.items_created, again.solutions_created, again.steps_created, again.gold_labels_created) == (
        0,
        0,
        0,
        0,
    )
    assert again.solutions_existing == 400
    assert db_counts()[:4] == before[:4]


def test_gold_from_first_error():
    assert gold_from_first_error(-1, 3) == [1, 1, 1]
    assert gold_from_first_error(0, 3) == [-1, None, None]
    assert gold_from_first_error(2, 3) == [1, 1, -1]


def record(**changes):
    base = {
        "id": "x-1",
        "generator": "m",
        "problem": "1+1?",
        "steps": ["a", "b", "c"],
        "final_answer_correct": False,
        "label": 1,
    }
    return base | changes


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (record(label=3), "label", "not a step index"),
        (record(label=-2), "label", "not a step index"),
        (record(label="1"), "label", "expected int"),
        (record(label=True), "label", "got bool"),
        (record(steps=[]), "steps", "no steps"),
        (record(steps=["a", 2]), "steps[1]", "expected str"),
        (record(problem=None), "problem", "missing"),
        (record(final_answer_correct="yes"), "final_answer_correct", "expected bool"),
        (record(id="x" * 201), "id", "longer than 200"),
    ],
)
def test_processbench_bad_record_names_file_line_field_and_changes_nothing(
    project, tmp_path, bad, field, message
):
    dataset_import(
        project=project,
        format_name="processbench",
        path=write_jsonl(tmp_path / "ok.jsonl", [record(id="ok")]),
    )
    before = db_counts()
    path = write_jsonl(tmp_path / "bad.jsonl", [record(id="a"), record(id="b"), bad])
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="processbench", path=path)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("bad.jsonl", 3, field)
    assert message in caught.value.message
    assert db_counts() == before


def test_processbench_json_array_error_names_the_record_position(project, tmp_path):
    # For a .json array the shared reader numbers records, not text lines.
    path = tmp_path / "math.json"
    path.write_text(json.dumps([record(id="a"), record(id="b", label=7)], indent=2))
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="processbench", path=path)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("math.json", 2, "label")
    assert db_counts() == (0, 0, 0, 0, 0)


def test_processbench_options_and_file_stem(project, tmp_path):
    path = write_jsonl(tmp_path / "olympiadbench.jsonl", [record(id="a", label=-1), record(id="b", label=0)])
    dataset_import(project=project, format_name="processbench", path=path)
    assert set(Item.objects.values_list("data_source", flat=True)) == {"olympiadbench"}
    other = tmp_path / "other"
    other.mkdir()
    path = write_jsonl(other / "math.jsonl", [record(id="c")])
    dataset_import(
        project=project,
        format_name="processbench",
        path=path,
        options={"data_source": "MATH", "gold_origin": "PB-v2"},
    )
    assert Item.objects.get(external_id="c").data_source == "MATH"
    assert set(
        GoldLabel.objects.filter(step__solution__item__external_id="c").values_list("origin", flat=True)
    ) == {"PB-v2"}
    assert GoldLabel.objects.filter(step__solution__item__external_id="a").count() == 3
    assert GoldLabel.objects.filter(step__solution__item__external_id="b").count() == 1


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
