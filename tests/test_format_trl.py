"""TRL stepwise supervision (parquet or jsonl): import, export, exact round trips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from annotation.formats import trl_stepwise
from annotation.models import AutoLabel, GoldLabel, Image, ImportRecord, Item, ItemImage, Solution, Step
from annotation.selectors import ExportFilters
from annotation.services.dataset_export import dataset_export
from annotation.services.dataset_import import dataset_import

pytestmark = pytest.mark.django_db


def png(color: tuple[int, int, int], size: tuple[int, int] = (7, 5)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE, GREEN = png((210, 10, 10)), png((10, 10, 210)), png((10, 170, 10))

# Rows as Hugging Face `datasets` stores a multimodal TRL stepwise dataset: image structs with bytes.
ROWS = [
    {"prompt": "What is the area of the red square?", "completions": ["Side 3.", "Area 9.", "Answer: 9"],
     "labels": [True, True, True], "images": [{"bytes": RED, "path": "red.png"}]},
    {"prompt": "What is the area of the red square?", "completions": ["Side 4.", "Area 16."],
     "labels": [False, False], "images": [{"bytes": RED, "path": "red.png"}]},
    {"prompt": "Compare the two squares.", "completions": ["Left is red.", "Right is blue.", "They differ."],
     "labels": [True, False, True],
     "images": [{"bytes": RED, "path": "red.png"}, {"bytes": BLUE, "path": "blue.png"}]},
    {"prompt": "Name the colour.", "completions": ["It is green."], "labels": [True],
     "images": [{"bytes": GREEN, "path": "green.png"}]},
]


def write_parquet(path: Path, rows: list[dict], *, row_group_size: int = 2) -> Path:
    table = pa.Table.from_pylist(rows, schema=trl_stepwise.EXPORT_SCHEMA)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def export_trl(project, *, options: dict | None = None, **filters) -> bytes:
    out = io.BytesIO()
    dataset_export(project=project, format_name="trl-stepwise", out=out, filters=ExportFilters(**filters), options=options)
    return out.getvalue()


def parquet_rows(data: bytes) -> list[dict]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def test_parquet_import_stores_items_images_and_auto_labels(project, tmp_path):
    path = write_parquet(tmp_path / "train.parquet", ROWS)
    result = dataset_import(project=project, format_name="trl-stepwise", path=path)
    assert result.items_created == 3 and result.solutions_created == 4 and result.steps_created == 9
    assert result.auto_labels_created == 9 and GoldLabel.objects.count() == 0
    assert Image.objects.count() == 3 and ItemImage.objects.count() == 4
    assert set(AutoLabel.objects.values_list("kind", "source")) == {("imported", "trl:train")}
    wrong = Solution.objects.get(response="Side 4.\n\nArea 16.")
    assert list(AutoLabel.objects.filter(step__solution=wrong).values_list("value", flat=True)) == [-1, -1]
    assert Item.objects.get(question="Compare the two squares.").item_images.count() == 2


def test_parquet_round_trip_gives_back_the_same_rows_and_image_bytes(project, tmp_path):
    path = write_parquet(tmp_path / "train.parquet", ROWS)
    dataset_import(project=project, format_name="trl-stepwise", path=path)
    exported = export_trl(project)
    assert parquet_rows(exported) == ROWS
    assert pq.read_schema(io.BytesIO(exported)) == trl_stepwise.EXPORT_SCHEMA


def test_export_writes_row_groups_of_the_requested_size(project, tmp_path):
    dataset_import(project=project, format_name="trl-stepwise", path=write_parquet(tmp_path / "t.parquet", ROWS))
    exported = export_trl(project, options={"row_group_rows": 3})
    assert pq.ParquetFile(io.BytesIO(exported)).num_row_groups == 2
    assert parquet_rows(exported) == ROWS


def test_reimport_creates_nothing_new(project, tmp_path):
    path = write_parquet(tmp_path / "train.parquet", ROWS)
    dataset_import(project=project, format_name="trl-stepwise", path=path)
    models = (Item, ItemImage, Image, Solution, Step, AutoLabel)
    before = [model.objects.count() for model in models]
    again = dataset_import(project=project, format_name="trl-stepwise", path=path)
    assert again.items_created == 0 and again.solutions_created == 0 and again.solutions_existing == 4
    assert [model.objects.count() for model in models] == before
    assert ImportRecord.objects.count() == 2


def test_gold_label_kind_and_source_option(project, tmp_path):
    path = write_parquet(tmp_path / "train.parquet", ROWS[:1])
    dataset_import(project=project, format_name="trl-stepwise", path=path,
                   options={"label_kind": "gold", "source": "my-labels"})
    assert AutoLabel.objects.count() == 0
    assert list(GoldLabel.objects.values_list("source", "origin", "value")) == [("imported", "my-labels", 1)] * 3
    assert parquet_rows(export_trl(project, label_source="gold")) == ROWS[:1]


def test_images_without_paths_or_sharing_a_path_stay_apart(project, tmp_path):
    rows = [
        {"prompt": "a", "completions": ["x"], "labels": [True], "images": [{"bytes": RED, "path": None}]},
        {"prompt": "b", "completions": ["y"], "labels": [False], "images": [{"bytes": RED, "path": "image.png"}]},
        # Another picture under the same file name, as datasets built from many folders have.
        {"prompt": "c", "completions": ["z"], "labels": [True], "images": [{"bytes": BLUE, "path": "image.png"}]},
    ]
    dataset_import(project=project, format_name="trl-stepwise", path=write_parquet(tmp_path / "t.parquet", rows))
    assert Image.objects.count() == 2
    blue = Item.objects.get(question="c").item_images.get()
    assert blue.image.width == 7 and blue.image.sha256 != Item.objects.get(question="b").item_images.get().image.sha256
    assert parquet_rows(export_trl(project)) == rows


def test_jsonl_with_image_paths_and_id_column_round_trips(project, tmp_path):
    folder = tmp_path / "trl"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "red.png").write_bytes(RED)
    (folder / "img" / "blue.png").write_bytes(BLUE)
    rows = [
        {"id": "q1", "prompt": "Which is red?", "completions": ["The left one.", "A"], "labels": [True, True],
         "images": ["img/red.png", "img/blue.png"]},
        {"id": "q1", "prompt": "Which is red?", "completions": ["The right one."], "labels": [False],
         "images": ["img/red.png", "img/blue.png"]},
        {"id": "q2", "prompt": "How many?", "completions": ["Two."], "labels": [True], "images": ["img/red.png"],
         "difficulty": 3},
    ]
    path = folder / "steps.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = dataset_import(project=project, format_name="trl-stepwise", path=path)
    assert result.items_created == 2 and result.solutions_created == 3
    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["q1", "q2"]
    exported = export_trl(project, options={"file_format": "jsonl"})
    assert [json.loads(line) for line in exported.decode().splitlines()] == rows


def test_neutral_steps_follow_the_neutral_option(project, tmp_path):
    from tests.test_format_visualprocessbench import vpb_record, write_vpb

    record = vpb_record(["a.png"], "q", ["s1", "s2", "s3"], [1, 0, -1])
    dataset_import(project=project, format_name="visualprocessbench",
                   path=write_vpb(tmp_path / "vpb", [record], {"a.png": GREEN}))
    assert parquet_rows(export_trl(project))[0]["labels"] == [True, True, False]
    assert parquet_rows(export_trl(project, options={"neutral": "negative"}))[0]["labels"] == [True, False, False]
    # skip: the row ends before the neutral step, so every label it keeps was given
    [row] = parquet_rows(export_trl(project, options={"neutral": "skip"}))
    assert (row["completions"], row["labels"]) == (["s1"], [True])
    assert parquet_rows(export_trl(project))[0]["images"] == [{"bytes": GREEN, "path": "a.png"}]
    with pytest.raises(ValueError, match="positive, negative, skip"):
        export_trl(project, options={"neutral": "true"})


def test_solutions_with_an_unlabelled_step_are_skipped(project, tmp_path):
    dataset_import(project=project, format_name="trl-stepwise", path=write_parquet(tmp_path / "t.parquet", ROWS))
    AutoLabel.objects.filter(step__solution__response="Side 3.\n\nArea 9.\n\nAnswer: 9", step__index=1).delete()
    out = io.BytesIO()
    count = dataset_export(project=project, format_name="trl-stepwise", out=out)
    assert count == 3
    assert parquet_rows(out.getvalue()) == [ROWS[1], ROWS[2], ROWS[3]]
    # Labelled up to its first error and no further: written up to and including the wrong step.
    AutoLabel.objects.filter(step__solution__response="Side 4.\n\nArea 16.", step__index=1).delete()
    assert parquet_rows(export_trl(project))[0] == dict(ROWS[1], completions=["Side 4."], labels=[False])


def test_bad_row_names_file_row_and_field(project, tmp_path):
    from annotation.formats.records import DatasetImportError

    rows = [dict(ROWS[0]), dict(ROWS[3], labels=[True, False])]
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="trl-stepwise", path=write_parquet(tmp_path / "bad.parquet", rows))
    assert (caught.value.file, caught.value.line, caught.value.field) == ("bad.parquet", 2, "labels")
    assert Item.objects.count() == 0 and Image.objects.count() == 0


def test_malformed_jsonl_row_names_the_field_where_it_broke(project, tmp_path):
    from annotation.formats.records import DatasetImportError

    path = tmp_path / "steps.jsonl"
    good = {"prompt": "q", "completions": ["a"], "labels": [True]}
    path.write_text(json.dumps(good) + "\n" + '{"prompt": "r", "completions": ["a", "b"], "labels": [true,, false]}\n')
    with pytest.raises(DatasetImportError) as caught:
        dataset_import(project=project, format_name="trl-stepwise", path=path)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("steps.jsonl", 2, "labels")
    assert "malformed JSON" in caught.value.message and Item.objects.count() == 0


def gsm8k_path():
    from tests.conftest import shared_data

    return shared_data("processbench-gsm8k/gsm8k.json")


def jsonl_rows(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def test_solutions_labelled_to_their_first_error_keep_the_steps_up_to_it(project):
    """ProcessBench labels each wrong solution up to its first error; TRL's PRM800K example keeps those steps."""
    raw = json.loads(gsm8k_path().read_text())
    dataset_import(project=project, format_name="processbench", path=gsm8k_path())
    rows = jsonl_rows(export_trl(project, options={"file_format": "jsonl"}))

    assert len(rows) == len(raw) == 400
    by_prompt_and_first = {(row["prompt"], row["completions"][0]): row for row in rows}
    for record in raw:
        row = by_prompt_and_first[record["problem"], record["steps"][0]]
        first_error = record["label"]
        if first_error == -1:
            assert row["labels"] == [True] * len(record["steps"]) and row["completions"] == record["steps"]
        else:
            assert row["labels"] == [True] * first_error + [False]
            assert row["completions"] == record["steps"][: first_error + 1]


@pytest.fixture
def fresh_accelerate_state():
    """TRL's trainer sets accelerate's process-wide state; later training in this process sets its own."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_exports_load_with_datasets_and_train_trl_prm_trainer(project, tmp_path, fresh_accelerate_state):
    datasets = pytest.importorskip("datasets")
    dataset_import(project=project, format_name="trl-stepwise", path=write_parquet(tmp_path / "t.parquet", ROWS))
    (tmp_path / "train.parquet").write_bytes(export_trl(project))
    (tmp_path / "train.jsonl").write_bytes(export_trl(project, options={"file_format": "jsonl"}))

    from_parquet = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train")
    from_jsonl = datasets.load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train")
    assert from_parquet.num_rows == from_jsonl.num_rows == len(ROWS)
    assert from_jsonl["labels"] == [row["labels"] for row in ROWS]
    assert from_parquet.features["labels"] == datasets.Sequence(datasets.Value("bool")) or from_parquet.features[
        "labels"
    ] == datasets.List(datasets.Value("bool"))
    assert from_parquet[2]["images"][1]["bytes"] == BLUE

    try:  # TRL 1.13 keeps PRMTrainer under trl.experimental.prm; 1.16 removed it
        from trl.experimental.prm import PRMConfig, PRMTrainer
    except ImportError:
        pytest.skip("the installed TRL has no PRMTrainer")
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForTokenClassification

    from prm.core.tiny_models import build_tiny_qwen2_vl

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_qwen2_vl(tmp_path / "tiny"))
    torch.manual_seed(0)
    model = Qwen2ForTokenClassification(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_labels=2, pad_token_id=tokenizer.pad_token_id,
    ))
    config = PRMConfig(output_dir=str(tmp_path / "prm"), max_steps=3, per_device_train_batch_size=2, report_to=[],
                       logging_steps=1, save_strategy="no", use_cpu=True, dataset_num_proc=None)
    trainer = PRMTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=from_jsonl.remove_columns(["images"]))
    result = trainer.train()
    assert result.global_step == 3
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
