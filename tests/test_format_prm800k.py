"""PRM800K importer on the real sample files (../shared/data/prm800k-sample) and on broken copies."""

import json

import pytest

from annotation.formats.records import DatasetImportError
from annotation.models import GoldLabel, ImportRecord, Item, Solution, Step
from annotation.services.dataset_import import dataset_import
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db

SAMPLE_FILES = (
    "prm800k-phase1-test-example.json",
    "prm800k-phase1-train-example.json",
    "prm800k-phase2-test-example.json",
    "prm800k-phase2-train-example.jsonl",
)
SENATE = "A Senate committee has 5 Democrats"
PENCILS = "Three pencils and a jumbo eraser"


def raw_records(path):
    """Every record of a sample file, decoded here without the importer's reader."""
    decoder, text, position, records = json.JSONDecoder(), path.read_text(), 0, []
    while text[position:].strip():
        position += len(text[position:]) - len(text[position:].lstrip())
        record, position = decoder.raw_decode(text, position)
        records.append(record)
    return records


def expected_trajectory(record):
    """(text, rating) per step, as the PRM800K README reconstructs it; an unrated last step is left out."""
    steps = record["label"]["steps"]
    trajectory = []
    for index, step in enumerate(steps):
        if step["chosen_completion"] is not None:
            picked = step["completions"][step["chosen_completion"]]
        elif step["human_completion"] is not None:
            picked = step["human_completion"]
        else:
            assert index == len(steps) - 1
            rated = [c for c in step["completions"] if c["rating"] is not None]
            if not rated:
                continue
            picked = rated[0]
        trajectory.append((picked["text"], picked["rating"]))
    return trajectory


def import_samples(project):
    return [
        dataset_import(project=project, format_name="prm800k", path=shared_data(f"prm800k-sample/{name}"))
        for name in SAMPLE_FILES
    ]


def db_counts():
    return (
        Item.objects.count(),
        Solution.objects.count(),
        Step.objects.count(),
        GoldLabel.objects.count(),
        ImportRecord.objects.count(),
    )


def test_prm800k_counts_match_the_raw_files(project):
    records = [r for name in SAMPLE_FILES for r in raw_records(shared_data(f"prm800k-sample/{name}"))]
    assert len(records) == 14
    # Both test files repeat the first record of their train file: those are one solution.
    distinct = {json.dumps(r, sort_keys=True): r for r in records}.values()
    trajectories = [expected_trajectory(r) for r in distinct]

    results = import_samples(project)

    assert sum(r.solutions_created for r in results) == len(distinct) == 12
    assert sum(r.solutions_existing for r in results) == 2
    assert (
        Item.objects.filter(project=project).count() == len({r["question"]["problem"] for r in records}) == 7
    )
    assert Step.objects.count() == sum(len(t) for t in trajectories)
    gold = GoldLabel.objects.filter(step__solution__item__project=project)
    assert gold.count() == sum(1 for t in trajectories for _, rating in t if rating is not None)
    for value in (-1, 0, 1):
        assert gold.filter(value=value).count() == sum(1 for t in trajectories for _, r in t if r == value)
    assert set(gold.values_list("source", "origin").distinct()) == {(GoldLabel.Source.IMPORTED, "PRM800K")}
    assert set(Item.objects.values_list("data_source", flat=True)) == {"PRM800K"}


def test_prm800k_reimport_creates_nothing(project):
    import_samples(project)
    before = db_counts()
    again = import_samples(project)
    assert (
        sum(r.solutions_created + r.items_created + r.steps_created + r.gold_labels_created for r in again)
        == 0
    )
    assert sum(r.solutions_existing for r in again) == 14
    assert db_counts()[:4] == before[:4]


def test_prm800k_phase2_solution_ends_on_the_first_error(project):
    dataset_import(
        project=project,
        format_name="prm800k",
        path=shared_data("prm800k-sample/prm800k-phase2-test-example.json"),
    )
    item = Item.objects.get(question__startswith=SENATE)
    assert item.answer == "28800" and item.metadata["ground_truth_solution"].endswith("\\boxed{28800}$.")
    solution = item.solutions.get()
    steps = list(solution.steps.order_by("index"))
    assert len(steps) == 7
    assert [s.gold_label.value for s in steps] == [1, 0, 1, 1, 1, 1, -1]
    # The last step is the pre-generated one rated -1, not the +1 alternatives written after it.
    assert steps[6].text.startswith(
        "For the Democrats, there are 5! ways to order them in a line, but only half"
    )
    assert solution.is_correct is None and solution.final_answer == ""
    assert solution.response == "\n\n".join(s.text for s in steps)
    assert solution.metadata["finish_reason"] == "found_error"
    assert solution.metadata["generation"] == 6
    assert solution.metadata["labeler"] == "cc88bf76-df08-4041-be67-3464279cb3b1"
    assert solution.metadata["pre_generated_answer"] == "7200"
    assert solution.metadata["pre_generated_step_count"] == 13


def test_prm800k_phase1_human_completion_and_answers(project):
    for name in SAMPLE_FILES:
        dataset_import(project=project, format_name="prm800k", path=shared_data(f"prm800k-sample/{name}"))
    pencils = Solution.objects.get(item__question__startswith=PENCILS)
    steps = list(pencils.steps.order_by("index"))
    assert steps[1].text == "We have $3p+e=1.24$ and $5p+e=1.82$."
    assert not GoldLabel.objects.filter(step=steps[1]).exists()  # a human-written step carries no rating
    assert [GoldLabel.objects.filter(step=s).values_list("value", flat=True).first() for s in steps] == [
        1,
        None,
        1,
        1,
        1,
        1,
    ]
    assert pencils.is_correct is True and pencils.final_answer == "29"
    assert pencils.metadata["human_written_steps"] == [1]
    # A wrong stated answer rated -1: the record says the solution is wrong.
    triangle = Solution.objects.get(item__answer="3R^2")
    assert triangle.is_correct is False and triangle.final_answer == "a^2 + b^2 + c^2 - 12R^2"
    # Gave up with the last step's alternatives unrated: that step is not part of the solution.
    gave_up = Solution.objects.get(metadata__finish_reason="give_up")
    assert gave_up.steps.count() == 29 and gave_up.metadata["unrated_last_step_left_out"] is True
    assert gave_up.is_correct is None
    # Six labelled solutions of one problem share its item.
    assert Item.objects.get(answer="504").solutions.count() == 6


def write_records(path, records, *, indent=None):
    path.write_text("".join(json.dumps(r, indent=indent) + "\n" for r in records))
    return path


@pytest.fixture
def good_record():
    return raw_records(shared_data("prm800k-sample/prm800k-phase2-test-example.json"))[0]


@pytest.fixture
def other_record():
    return raw_records(shared_data("prm800k-sample/prm800k-phase1-test-example.json"))[0]


def breaking_cases():
    def chosen_out_of_range(r):
        r["label"]["steps"][2]["chosen_completion"] = 5

    def bad_rating(r):
        r["label"]["steps"][0]["completions"][0]["rating"] = 2

    def missing_problem(r):
        del r["question"]["problem"]

    def unchosen_middle_step(r):
        r["label"]["steps"][1]["chosen_completion"] = None

    def steps_not_list(r):
        r["label"]["steps"] = {"0": 1}

    def text_not_string(r):
        r["label"]["steps"][3]["completions"][0]["text"] = 7

    return [
        (chosen_out_of_range, "label.steps[2].chosen_completion", "out of range"),
        (bad_rating, "label.steps[0].completions[0].rating", "not one of"),
        (missing_problem, "question.problem", "missing"),
        (unchosen_middle_step, "label.steps[1].chosen_completion", "no human_completion"),
        (steps_not_list, "label.steps", "expected list"),
        (text_not_string, "label.steps[3].completions[0].text", "expected str"),
    ]


@pytest.mark.parametrize(("break_record", "field", "message"), breaking_cases())
def test_prm800k_bad_record_names_file_line_field_and_changes_nothing(
    project, tmp_path, good_record, other_record, break_record, field, message
):
    dataset_import(
        project=project, format_name="prm800k", path=write_records(tmp_path / "first.jsonl", [other_record])
    )
    before = db_counts()
    break_record(good_record)
    path = write_records(
        tmp_path / "bad.jsonl", [other_record, other_record | {"timestamp": "t2"}, good_record]
    )
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="prm800k", path=path)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("bad.jsonl", 3, field)
    assert message in caught.value.message
    assert db_counts() == before


def test_prm800k_pretty_printed_records_report_their_first_line(project, tmp_path, good_record, other_record):
    first_lines = len(json.dumps(other_record, indent=4).splitlines())
    good_record["label"]["steps"][4]["completions"][0]["rating"] = "+"
    path = write_records(tmp_path / "pretty.json", [other_record, good_record], indent=4)
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="prm800k", path=path)
    assert caught.value.line == first_lines + 1
    assert caught.value.field == "label.steps[4].completions[0].rating"
    assert db_counts() == (0, 0, 0, 0, 0)


def test_prm800k_malformed_json_and_unclosed_record(project, tmp_path, other_record):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(other_record) + "\n" + '{"labeler": "x", "question": {]}\n')
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="prm800k", path=broken)
    assert (caught.value.file, caught.value.line) == ("broken.jsonl", 2)
    assert "malformed JSON" in caught.value.message

    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text(json.dumps(other_record, indent=2) + "\n{\n" + '  "labeler": "x",\n')
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="prm800k", path=unclosed)
    assert caught.value.line == len(json.dumps(other_record, indent=2).splitlines()) + 1
    assert "not closed" in caught.value.message
    assert db_counts() == (0, 0, 0, 0, 0)


def test_prm800k_options_and_solution_keys(project, tmp_path, other_record):
    relabelled = json.loads(json.dumps(other_record))
    relabelled["labeler"] = "someone-else"
    path = write_records(tmp_path / "two.jsonl", [other_record, relabelled])
    result = dataset_import(
        project=project,
        format_name="prm800k",
        path=path,
        options={"gold_origin": "prm800k-v2", "data_source": "MATH"},
    )
    # Same problem, same steps, two labelers: one item, two solutions.
    assert (result.items_created, result.solutions_created) == (1, 2)
    assert len(set(Solution.objects.values_list("key", flat=True))) == 2
    assert set(GoldLabel.objects.values_list("origin", flat=True)) == {"prm800k-v2"}
    assert Item.objects.get().data_source == "MATH"


def test_prm800k_non_utf8_line_is_named(project, tmp_path, other_record):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(other_record).encode() + b"\n" + '{"labeler": "é"}\n'.encode("latin-1"))
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="prm800k", path=path)
    assert (caught.value.file, caught.value.line) == ("latin1.jsonl", 2)
    assert "UTF-8" in caught.value.message
    assert db_counts() == (0, 0, 0, 0, 0)
