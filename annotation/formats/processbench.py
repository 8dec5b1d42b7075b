"""ProcessBench (QwenLM/ProcessBench): a JSON array (or JSON lines) of solutions already split into steps.

Fields: `id`, `generator`, `problem`, `steps`, `final_answer_correct`, `label`, where
`label` is the index of the first wrong step, or -1 when every step is right. Imported as
gold labels: the steps before it +1, it -1, the steps after it unlabelled (ProcessBench
does not judge them). Each record is its own item (external id = `id`).

Options: `data_source` (default: the file's stem, e.g. "gsm8k"), `gold_origin` (default "ProcessBench").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from annotation.formats.reading import RecordReader, iter_json_records
from annotation.formats.records import DatasetImportError, ParsedItem, ParsedSolution
from annotation.steps import join_steps

DEFAULT_ORIGIN = "ProcessBench"
MAX_ID_LENGTH = 200  # Item.external_id, Solution.key and Solution.policy_model columns


def gold_from_first_error(first_error: int, step_count: int) -> list[int | None]:
    """+1 before the first wrong step, -1 on it, None after; all +1 when `first_error` is -1."""
    if first_error == -1:
        return [1] * step_count
    return [1] * first_error + [-1] + [None] * (step_count - first_error - 1)


def parse(source) -> Iterator[ParsedSolution]:
    path: Path = source.path
    if not path.is_file():
        raise DatasetImportError("the processbench format takes one .json or .jsonl file", file=path.name)
    data_source = str(source.options.get("data_source") or path.stem)
    origin = str(source.options.get("gold_origin", DEFAULT_ORIGIN))
    for line, record in iter_json_records(path):
        reader = RecordReader(record, file=path.name, line=line)
        yield _parse_record(reader, data_source=data_source, origin=origin)


def _parse_record(reader: RecordReader, *, data_source: str, origin: str) -> ParsedSolution:
    external_id = reader.text("id")
    generator = reader.text("generator", required=False)
    for field, value in (("id", external_id), ("generator", generator)):
        if len(value) > MAX_ID_LENGTH:
            raise reader.error(f"longer than {MAX_ID_LENGTH} characters", field)
    steps = reader.string_list("steps")
    if not steps:
        raise reader.error("no steps", "steps")
    first_error = reader.get("label", int)
    if not -1 <= first_error < len(steps):
        raise reader.error(
            f"label {first_error} is not a step index: expected -1 (no error) or 0..{len(steps) - 1}", "label"
        )
    item = ParsedItem(external_id=external_id, question=reader.text("problem"), data_source=data_source)
    return ParsedSolution(
        item=item,
        key=generator or "solution",
        steps=steps,
        response=join_steps(steps),
        policy_model=generator,
        is_correct=reader.get("final_answer_correct", bool, required=False),
        metadata={"first_error_step": first_error},
        gold=gold_from_first_error(first_error, len(steps)),
        gold_origin=origin,
        line=reader.line,
    )
