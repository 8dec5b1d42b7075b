"""VisualProcessBench: `test.jsonl` beside `images.zip`, one human-labelled solution per line.

Record (read and written exactly):
  {"image": [paths], "question": str, "answer": str, "response": {"steps": [str],
   "process_correctness": [1, 0, -1, ...]}, "policy_model": str, "data_source": str}

The format carries no ids: an item is identified by a hash of (image paths, question), so the
solutions of several policy models share one item, and a solution by a hash of
(policy_model, steps). Labels become imported gold labels. Keys Stepmark has no column for
are kept in the solution's metadata under "visualprocessbench" and written back on export,
so import followed by export gives back the same records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from annotation.formats.archive import images_zip_write
from annotation.formats.reading import RecordReader, iter_json_records
from annotation.formats.records import DatasetImportError, ExportRecord, ParsedItem, ParsedSolution
from annotation.steps import join_steps

MEDIA_TYPE = "application/jsonl"
SUFFIX = ".jsonl"
IMAGES_ARCHIVE = "images.zip"  # the images travel beside the jsonl (formats.archive.images_zip_write)
DEFAULT_ORIGIN = "VisualProcessBench"
METADATA_KEY = "visualprocessbench"

RECORD_FIELDS = ("image", "question", "answer", "response", "policy_model", "data_source")
RESPONSE_FIELDS = ("steps", "process_correctness")
MAX_NAME_LENGTH = 200  # Solution.policy_model, Item.data_source
MAX_PATH_LENGTH = 500  # ItemImage.source_path


def stable_hash(*parts: Any) -> str:
    """A short id that depends only on `parts` (JSON-encoded), the same on every machine and run."""
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:32]


class _ResponseReader(RecordReader):
    """Reads the nested `response` object; errors name its fields as `response.<field>`."""

    def error(self, message: str, field: str | None = None) -> DatasetImportError:
        return super().error(message, f"response.{field}" if field else "response")


def parse(source) -> Iterator[ParsedSolution]:
    origin = str(source.options.get("origin") or DEFAULT_ORIGIN)
    items: dict[str, ParsedItem] = {}
    seen: dict[tuple[str, str], int] = {}  # (item id, solution key) -> line, to name both duplicates
    for line, record in iter_json_records(source.path):
        reader = RecordReader(record, file=source.name, line=line)
        image_paths = reader.string_list("image")
        for position, image_path in enumerate(image_paths):
            if not image_path or len(image_path) > MAX_PATH_LENGTH:
                raise reader.error(f"image path must have 1 to {MAX_PATH_LENGTH} characters", f"image[{position}]")
        question = reader.get("question", str)
        answer = reader.get("answer", (str, int, float))
        policy_model = _name(reader, "policy_model")
        data_source = _name(reader, "data_source")
        response = reader.get("response", dict)
        response_reader = _ResponseReader(response, file=source.name, line=line)
        steps = response_reader.string_list("steps")
        if not steps:
            raise response_reader.error("a solution needs at least one step", "steps")
        labels = response_reader.label_list("process_correctness")
        if len(labels) != len(steps):
            raise response_reader.error(
                f"{len(steps)} steps but {len(labels)} labels: every step needs exactly one label",
                "process_correctness",
            )
        external_id = stable_hash(image_paths, question)
        item = items.get(external_id)
        if item is None:
            item = items[external_id] = ParsedItem(
                external_id=external_id,
                question=question,
                answer=str(answer),
                data_source=data_source,
                image_paths=image_paths,
            )
        key = stable_hash(policy_model, steps)
        if (external_id, key) in seen:
            raise reader.error(
                f"duplicate record: same image, question, policy_model and steps as line {seen[external_id, key]}",
                "response.steps",
            )
        seen[external_id, key] = line
        yield ParsedSolution(
            item=item,
            key=key,
            steps=steps,
            response=join_steps(steps),
            policy_model=policy_model,
            metadata=_kept_fields(record, response, item=item, answer=answer, data_source=data_source),
            gold=list(labels),
            gold_origin=origin,
            line=line,
        )


def _name(reader: RecordReader, field: str) -> str:
    value = reader.get(field, str)
    if len(value) > MAX_NAME_LENGTH:
        raise reader.error(f"longer than {MAX_NAME_LENGTH} characters", field)
    return value


def _kept_fields(record: dict, response: dict, *, item: ParsedItem, answer: Any, data_source: str) -> dict:
    """What export needs beyond the stored columns to write this record back exactly."""
    kept: dict[str, Any] = {}
    extra = {key: value for key, value in record.items() if key not in RECORD_FIELDS}
    if extra:
        kept["extra"] = extra
    response_extra = {key: value for key, value in response.items() if key not in RESPONSE_FIELDS}
    if response_extra:
        kept["response_extra"] = response_extra
    # Solutions share their item's answer and data source; keep this record's own when it differs
    # (or when the answer was a JSON number, which the item stores as text).
    values = {}
    if not isinstance(answer, str) or answer != item.answer:
        values["answer"] = answer
    if data_source != item.data_source:
        values["data_source"] = data_source
    if values:
        kept["values"] = values
    return {METADATA_KEY: kept} if kept else {}


def write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int:
    """One JSON object per line; solutions with an unlabelled step are skipped (the format labels every step)."""
    written = 0
    for record in records:
        line = export_line(record)
        if line is None:
            continue
        out.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
        written += 1
    return written


def write_images(records: Iterable[ExportRecord], out: BinaryIO) -> int:
    """`images.zip` for the same records `write` takes: the images of the solutions it writes."""
    return images_zip_write(records=(record for record in records if export_line(record) is not None), out=out)


def export_line(record: ExportRecord) -> dict | None:
    labels = [step.label for step in record.steps]
    if not labels or any(label is None for label in labels):
        return None
    kept = record.solution_metadata.get(METADATA_KEY) if isinstance(record.solution_metadata, dict) else None
    kept = kept if isinstance(kept, dict) else {}
    values = kept.get("values", {})
    return {
        "image": list(record.image_paths),
        "question": record.question,
        "answer": values.get("answer", record.answer),
        "response": {
            "steps": [step.text for step in record.steps],
            "process_correctness": labels,
            **({"error_categories": record.error_categories()} if record.carries_error_categories else {}),
            **kept.get("response_extra", {}),
        },
        "policy_model": record.policy_model,
        "data_source": values.get("data_source", record.data_source),
        **kept.get("extra", {}),
    }
