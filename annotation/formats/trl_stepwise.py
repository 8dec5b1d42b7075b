"""TRL stepwise supervision: `prompt`, `completions` (steps), `labels` (bools), optional `images`.

Read from .jsonl or .parquet (streamed by record batches, so memory stays flat). `images` holds
paths (read from the image source) or Hugging Face image structs {"bytes", "path"} whose bytes
travel in the row. Labels become imported auto labels (+1/-1, source option, default
"trl:<file stem>") or, with option label_kind="gold", imported gold labels. Items are found by
the id column (option id_column, default "id") when the row has one, else by a hash of
(prompt, image paths). Other columns are kept in the solution's metadata.

Export writes parquet row group by row group with the images' bytes embedded, or with option
file_format="jsonl", JSON lines naming image paths. Which steps are written, and neutral (0)
steps (option neutral: positive, negative or skip), follow annotation.formats.step_labels:
solutions labelled up to their first error are written up to and including it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.storage import default_storage

from annotation.formats.reading import RecordReader, iter_json_records
from annotation.formats.records import (
    DatasetImportError,
    ExportRecord,
    ParsedAutoLabel,
    ParsedItem,
    ParsedSolution,
)
from annotation.formats.step_labels import binary_labels, neutral_option

MEDIA_TYPE = "application/vnd.apache.parquet"
SUFFIX = ".parquet"
JSONL_MEDIA_TYPE = "application/jsonl"
JSONL_SUFFIX = ".jsonl"
# The files this exporter writes (option file_format), by suffix; the first is the default.
FILE_FORMATS = {"parquet": SUFFIX, "jsonl": JSONL_SUFFIX}
MEDIA_TYPES = {"parquet": MEDIA_TYPE, "jsonl": JSONL_MEDIA_TYPE}

KNOWN_COLUMNS = ("prompt", "completions", "labels", "images")
EXTRA_KEY = "record_extra"  # solution metadata: the row's other columns
# Embedded images with no path, or whose path another embedded image already used, get a path
# carrying their hash so the import keeps them apart; export strips it again.
EMBEDDED_MARK = "#sha256:"
READ_BATCH_ROWS = 256
WRITE_ROW_GROUP_ROWS = 256

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
EXPORT_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.bool_())),
        ("images", pa.list_(IMAGE_STRUCT)),
    ]
)
# With error categories (projects that use them): one list of category names per written step.
EXPORT_SCHEMA_WITH_CATEGORIES = EXPORT_SCHEMA.append(pa.field("error_categories", pa.list_(pa.list_(pa.string()))))


def stable_hash(*parts: object) -> str:
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:24]


# --- import -------------------------------------------------------------------------------------


def _iter_rows(source) -> Iterator[tuple[int, dict[str, Any]]]:
    if source.path.suffix != ".parquet":
        yield from iter_json_records(source.path)
        return
    try:
        parquet = pq.ParquetFile(source.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetImportError(f"not a readable parquet file: {exc}", file=source.name) from None
    row_number = 0
    batches = parquet.iter_batches(batch_size=READ_BATCH_ROWS)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:  # a damaged row group deep inside the file
            raise DatasetImportError(
                f"unreadable parquet data after row {row_number}: {exc}", file=source.name, line=row_number + 1
            ) from None
        if batch is None:
            return
        for row in batch.to_pylist():
            row_number += 1
            yield row_number, row


def parse(source) -> Iterator[ParsedSolution]:
    options = source.options
    label_kind = str(options.get("label_kind", "auto"))
    if label_kind not in ("auto", "gold"):
        raise DatasetImportError(f"option label_kind must be 'auto' or 'gold', not {label_kind!r}", file=source.name)
    label_source = str(options.get("source", f"trl:{source.path.stem}"))
    id_column = str(options.get("id_column", "id"))
    embedded_paths: dict[str, str] = {}  # path -> sha256 of the bytes first embedded under it
    for line, row in _iter_rows(source):
        reader = RecordReader(row, file=source.name, line=line)
        prompt = reader.get("prompt", str)
        steps = reader.string_list("completions")
        labels = reader.get("labels", list)
        for position, value in enumerate(labels):
            if not isinstance(value, bool):
                raise reader.error(f"label {value!r} is not a boolean", f"labels[{position}]")
        if not steps:
            raise reader.error("row has no completions", "completions")
        if len(labels) != len(steps):
            raise reader.error(f"{len(steps)} completions but {len(labels)} labels", "labels")
        image_paths, image_data = _images(reader, embedded_paths)
        if row.get(id_column) is not None:
            external_id = reader.text(id_column)
            if len(external_id) > 200:
                raise reader.error("id longer than 200 characters", id_column)
        else:
            external_id = stable_hash(prompt, image_paths)
        extra = {key: value for key, value in row.items() if key not in KNOWN_COLUMNS}
        values = [1 if label else -1 for label in labels]
        yield ParsedSolution(
            item=ParsedItem(external_id=external_id, question=prompt, image_paths=image_paths, image_data=image_data),
            key=stable_hash(steps),
            steps=steps,
            response="\n\n".join(steps),
            metadata={EXTRA_KEY: _json_safe(extra)} if extra else {},
            gold=values if label_kind == "gold" else None,
            gold_origin=label_source if label_kind == "gold" else "",
            auto=[ParsedAutoLabel(kind="imported", source=label_source, value=v) for v in values]
            if label_kind == "auto"
            else None,
            line=line,
        )


def _images(reader: RecordReader, embedded_paths: dict[str, str]) -> tuple[list[str], dict[str, bytes]]:
    images = reader.get("images", list, required=False, default=[])
    paths: list[str] = []
    data: dict[str, bytes] = {}
    for position, image in enumerate(images):
        field = f"images[{position}]"
        if isinstance(image, str):
            paths.append(image)
            continue
        if not isinstance(image, dict):
            raise reader.error(f"expected a path or an image struct, got {type(image).__name__}", field)
        path, raw = image.get("path"), image.get("bytes")
        if path is not None and not isinstance(path, str):
            raise reader.error(f"path is {type(path).__name__}, expected str", f"{field}.path")
        if raw is None:
            if not path:
                raise reader.error("image struct has neither bytes nor path", field)
            paths.append(path)
            continue
        if not isinstance(raw, bytes):
            raise reader.error(f"bytes is {type(raw).__name__}, expected binary", f"{field}.bytes")
        digest = hashlib.sha256(raw).hexdigest()
        if path and embedded_paths.setdefault(path, digest) == digest:
            key = path
        else:
            key = f"{path or ''}{EMBEDDED_MARK}{digest}"
        if len(key) > 500:
            raise reader.error("image path longer than 500 characters", f"{field}.path")
        paths.append(key)
        data[key] = raw
    return paths, data


def _json_safe(value: Any) -> Any:
    """Parquet columns may hold bytes or dates; metadata is JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


# --- export -------------------------------------------------------------------------------------


def _source_path(path: str) -> str | None:
    original = path.split(EMBEDDED_MARK, 1)[0] if EMBEDDED_MARK in path else path
    return original or None


def write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int:
    """Write parquet (default) or JSON lines (option file_format="jsonl"); returns rows written."""
    neutral = neutral_option(options)
    file_format = str(options.get("file_format") or "parquet")
    if file_format not in FILE_FORMATS:
        raise ValueError(f"option file_format must be one of {', '.join(FILE_FORMATS)}, not {file_format!r}")
    if file_format == "jsonl":
        return _write_jsonl(records, out, neutral=neutral)
    rows_per_group = int(options.get("row_group_rows", WRITE_ROW_GROUP_ROWS))
    written = 0
    rows: list[dict] = []
    # One project's records all carry error categories or none: the first one decides the schema.
    records = iter(records)
    first = next(records, None)
    categories = first is not None and first.carries_error_categories
    schema = EXPORT_SCHEMA_WITH_CATEGORIES if categories else EXPORT_SCHEMA
    with pq.ParquetWriter(out, schema) as writer:
        for record in itertools.chain([first] if first is not None else [], records):
            labels = binary_labels(record.steps, neutral=neutral)
            if labels is None:
                continue
            rows.append(
                {
                    "prompt": record.question,
                    "completions": [step.text for step in record.steps[: len(labels)]],
                    "labels": labels,
                    "images": [
                        {"bytes": _stored_bytes(name), "path": _source_path(path)}
                        for path, name in zip(record.image_paths, record.image_files, strict=True)
                    ],
                    **({"error_categories": record.error_categories(len(labels))} if categories else {}),
                }
            )
            if len(rows) >= rows_per_group:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                written += len(rows)
                rows = []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            written += len(rows)
    return written


def _stored_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def _write_jsonl(records: Iterable[ExportRecord], out: BinaryIO, *, neutral: str) -> int:
    written = 0
    for record in records:
        labels = binary_labels(record.steps, neutral=neutral)
        if labels is None:
            continue
        row: dict[str, Any] = {
            "prompt": record.question,
            "completions": [step.text for step in record.steps[: len(labels)]],
            "labels": labels,
        }
        if record.image_paths:
            row["images"] = [_source_path(path) for path in record.image_paths]
        if record.carries_error_categories:
            row["error_categories"] = record.error_categories(len(labels))
        for key, value in (record.solution_metadata or {}).get(EXTRA_KEY, {}).items():
            row.setdefault(key, value)
        out.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
        written += 1
    return written
