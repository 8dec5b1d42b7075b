"""The import writer's COPY path stores exactly what the ORM's bulk_create would.

`_BatchWriter.use_copy = False` forces bulk_create, so both run on the same database and their
rows can be compared field by field.
"""

from __future__ import annotations

import json
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.formats.records import DatasetImportError, ParsedAutoLabel, ParsedItem, ParsedSolution
from annotation.models import AutoLabel, GoldLabel, Image, Item, Project, Solution, Step
from annotation.services import dataset_import as dataset_import_module
from annotation.services.dataset_import import _BatchWriter, dataset_import
from benchmarks.import_export import generate_raw, write_images

pytestmark = pytest.mark.django_db

# Text that COPY's text format must escape: tab, newline, carriage return, backslash; plus non-ASCII.
AWKWARD = "a\tb\nc\r\nd \\ e \\N ∫ x² dx = 🙂 'q' \"dq\""


def parse(source):
    """A parser for the `writer-test` format: a fixed set of solutions with every kind of label."""
    items = [
        ParsedItem(external_id="item-1", question=f"Q1 {AWKWARD}", options=["A", "B\tC"], answer="B",
                   data_source="test", metadata={"nested": {"k": [1, 2.5, None]}, "ü": AWKWARD}),
        ParsedItem(external_id="item-2", question="Q2", answer=""),
    ]
    for number in range(7):
        steps = [f"step {index} of {number}: {AWKWARD if index == 1 else 'plain'}" for index in range(number % 4 + 1)]
        yield ParsedSolution(
            item=items[number % 2],
            key=f"solution-{number}",
            steps=steps,
            response="\n\n".join(steps),
            policy_model="model-x" if number % 3 else "",
            final_answer=str(number),
            is_correct=(None, True, False)[number % 3],
            metadata={"number": number, "text": AWKWARD} if number % 2 else {},
            gold=[(1, 0, -1, None)[(number + index) % 4] for index in range(len(steps))] if number % 2 else None,
            gold_origin="VisualProcessBench" if number % 2 else "",
            auto=[
                None if (number + index) % 5 == 0 else ParsedAutoLabel(
                    kind=("mc", "prm", "imported")[index % 3],
                    source="src",
                    score=None if index % 3 == 2 else (number + index) % 17 / 16,
                    value=(1, -1, 0)[number % 3] if index % 3 == 2 else None,
                    num_correct=(number + index) % 17 if index % 3 == 0 else None,
                    num_total=16 if index % 3 == 0 else None,
                )
                for index in range(len(steps))
            ],
            line=number + 1,
        )


@pytest.fixture
def writer_test_format(monkeypatch, tmp_path):
    monkeypatch.setitem(dataset_import_module.IMPORT_FORMATS, "writer-test", __name__)
    path = tmp_path / "writer-test.txt"
    path.write_text("parsed by tests.test_import_writer_postgres.parse\n")
    return path


def stored_rows(project: Project) -> dict[str, list[tuple]]:
    """Every row the import stored for `project`, without ids and timestamps, in a stable order."""
    in_project = {"step__solution__item__project": project}
    step_key = ("step__solution__item__external_id", "step__solution__key", "step__index")
    return {
        "items": sorted(
            (external_id, question, json.dumps(options), answer, source, json.dumps(metadata, sort_keys=True))
            for external_id, question, options, answer, source, metadata in Item.objects.filter(project=project).values_list(
                "external_id", "question", "options", "answer", "data_source", "metadata"
            )
        ),
        "solutions": sorted(
            (*row[:-1], json.dumps(row[-1], sort_keys=True))
            for row in Solution.objects.filter(item__project=project).values_list(
                "item__external_id", "key", "policy_model", "response", "final_answer", "is_correct", "priority", "metadata"
            )
        ),
        "steps": sorted(
            Step.objects.filter(solution__item__project=project).values_list(
                "solution__item__external_id", "solution__key", "index", "text"
            )
        ),
        "gold": sorted(
            GoldLabel.objects.filter(**in_project).values_list(*step_key, "value", "source", "origin", "decided_by")
        ),
        "auto": sorted(
            AutoLabel.objects.filter(**in_project).values_list(
                *step_key, "kind", "source", "score", "value", "num_correct", "num_total"
            )
        ),
    }


def test_copy_and_bulk_paths_store_identical_rows(writer_test_format, monkeypatch):
    copied = Project.objects.create(name="copy path")
    bulk = Project.objects.create(name="bulk path")
    with CaptureQueriesContext(connection) as copy_queries:
        copy_result = dataset_import(project=copied, format_name="writer-test", path=writer_test_format, batch_size=3)
    monkeypatch.setattr(_BatchWriter, "use_copy", False)
    with CaptureQueriesContext(connection) as bulk_queries:
        bulk_result = dataset_import(project=bulk, format_name="writer-test", path=writer_test_format, batch_size=3)

    # The two runs really took different paths: only bulk_create sends INSERTs (COPY bypasses the query log).
    for model in (Item, Solution, Step, AutoLabel, GoldLabel):
        inserts = f'INSERT INTO "{model._meta.db_table}"'
        assert not any(q["sql"].startswith(inserts) for q in copy_queries.captured_queries), model
        assert any(q["sql"].startswith(inserts) for q in bulk_queries.captured_queries), model

    assert copy_result.as_dict() == bulk_result.as_dict()
    assert copy_result.solutions_created == 7 and copy_result.items_created == 2
    copy_rows, bulk_rows = stored_rows(copied), stored_rows(bulk)
    assert copy_rows == bulk_rows
    assert len(copy_rows["steps"]) == copy_result.steps_created == 1 + 2 + 3 + 4 + 1 + 2 + 3
    assert len(copy_rows["gold"]) == copy_result.gold_labels_created > 0
    assert len(copy_rows["auto"]) == copy_result.auto_labels_created > 0
    assert any(AWKWARD in text for *_, text in copy_rows["steps"])
    # Steps are numbered in file order and hang off the right solution.
    solution = Solution.objects.get(item__project=copied, key="solution-3")
    assert list(solution.steps.order_by("index").values_list("text", flat=True)) == [
        f"step {index} of 3: {AWKWARD if index == 1 else 'plain'}" for index in range(4)
    ]
    # Ids came from the tables' own sequences: the ORM's next inserts do not collide with them.
    extra = Step.objects.create(solution=solution, index=99, text="added later")
    assert extra.pk > max(solution.steps.exclude(pk=extra.pk).values_list("pk", flat=True))
    assert AutoLabel.objects.create(step=extra, kind="mc", source="later", score=0.5).pk


def test_raw_import_counts_and_idempotent_reimport_on_copy_path(tmp_path, project):
    image_paths = write_images(tmp_path / "images")
    steps = generate_raw(tmp_path / "raw.jsonl", solutions=24, image_paths=image_paths)
    first = dataset_import(project=project, format_name="visualprm400k-raw", path=tmp_path / "raw.jsonl", batch_size=5)
    assert first.solutions_created == 24 and first.items_created == 6
    assert first.steps_created == steps == Step.objects.filter(solution__item__project=project).count()
    assert first.auto_labels_created == steps == AutoLabel.objects.filter(kind="mc").count()
    assert first.images_created == Image.objects.count() == 6
    before = (Item.objects.count(), Solution.objects.count(), Step.objects.count(), AutoLabel.objects.count())
    again = dataset_import(project=project, format_name="visualprm400k-raw", path=tmp_path / "raw.jsonl", batch_size=5)
    assert (again.solutions_created, again.steps_created, again.auto_labels_created) == (0, 0, 0)
    assert again.solutions_existing == 24 and again.items_existing == 6
    assert (Item.objects.count(), Solution.objects.count(), Step.objects.count(), AutoLabel.objects.count()) == before


def test_bad_record_after_copied_batches_rolls_everything_back(tmp_path, project, settings):
    image_paths = write_images(tmp_path / "images")
    generate_raw(tmp_path / "raw.jsonl", solutions=12, image_paths=image_paths)
    lines = (tmp_path / "raw.jsonl").read_text().splitlines()
    bad = json.loads(lines[10])
    bad["steps_with_score"][0]["num_mc_correct"] = 99  # more right completions than were sampled
    lines[10] = json.dumps(bad)
    (tmp_path / "raw.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetImportError) as caught:
        # batch_size=4: two batches are COPYed before line 11 is read.
        dataset_import(project=project, format_name="visualprm400k-raw", path=tmp_path / "raw.jsonl", batch_size=4)
    assert caught.value.line == 11 and "num_mc_correct" in caught.value.field
    assert (Item.objects.count(), Solution.objects.count(), Step.objects.count(), AutoLabel.objects.count()) == (0, 0, 0, 0)
    assert Image.objects.count() == 0
    media = tmp_path / "media"
    assert not media.exists() or not any(path.is_file() for path in media.rglob("*"))


def test_writer_rejects_label_the_database_would_refuse(writer_test_format, monkeypatch, project):
    good_parse = parse

    def bad_parse(source):
        yield from good_parse(source)
        yield ParsedSolution(
            item=ParsedItem(external_id="item-3", question="Q3"), key="bad", steps=["only step"],
            auto=[ParsedAutoLabel(kind="mc", source="src", score=1.5)], line=8,
        )

    monkeypatch.setattr(sys.modules[__name__], "parse", bad_parse)
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="writer-test", path=writer_test_format, batch_size=3)
    assert caught.value.line == 8 and caught.value.field == "labels" and "outside [0, 1]" in caught.value.message
    assert Solution.objects.count() == 0 and Step.objects.count() == 0 and AutoLabel.objects.count() == 0


def test_export_of_interleaved_projects_gives_each_its_own_rows(tmp_path, project):
    """Chunks are read by id range where ids are dense; another project's rows inside the range stay out."""
    from annotation.selectors import ExportFilters, export_records

    other = Project.objects.create(name="other project")
    image_paths = write_images(tmp_path / "images")
    for name, seed in (("a1", 1), ("b", 2), ("a2", 3)):
        generate_raw(tmp_path / f"{name}.jsonl", solutions=8, image_paths=image_paths, seed=seed)
    dataset_import(project=project, format_name="visualprm400k-raw", path=tmp_path / "a1.jsonl")
    dataset_import(project=other, format_name="visualprm400k-raw", path=tmp_path / "b.jsonl")
    dataset_import(project=project, format_name="visualprm400k-raw", path=tmp_path / "a2.jsonl")
    stepless = Solution.objects.create(item=Item.objects.filter(project=project).first(), key="no steps yet", response="")

    expected = {
        solution.pk: [(step.index, step.text, step.auto_labels.get(kind="mc").score) for step in solution.steps.order_by("index")]
        for solution in Solution.objects.filter(item__project=project)
    }
    for label_source in ("mc", "merged"):
        records = list(export_records(project=project, filters=ExportFilters(label_source=label_source), chunk_size=10))
        keys = Solution.objects.filter(item__project=project).order_by("id").values_list("key", flat=True)
        assert [record.solution_key for record in records] == list(keys)
        for record, solution_id in zip(records, expected, strict=True):
            assert [(step.index, step.text, step.mc_score) for step in record.steps] == expected[solution_id]
            assert all(step.label == (1 if step.mc_score > 0 else -1) for step in record.steps)
    assert next(r for r in records if r.solution_key == "no steps yet").steps == []
    assert stepless.pk in expected
