"""Exporting datasets: streaming, with filters, in the formats the field uses.

Each exporter module in `annotation.formats` provides
`write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int` (records written),
plus `MEDIA_TYPE` and `SUFFIX`; one that writes several file kinds names them in `FILE_FORMATS`
(name -> suffix, the default first) and takes option `file_format`. Records come from
`annotation.selectors.export_records`, so memory stays flat however large the project.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from annotation.formats.records import ExportRecord
from annotation.formats.step_labels import neutral_option
from annotation.models import Project
from annotation.selectors import ExportFilters, export_records

EXPORT_FORMATS: dict[str, str] = {
    "visualprocessbench": "annotation.formats.visualprocessbench",
    "visualprm400k": "annotation.formats.visualprm400k",
    "visualprm400k-raw": "annotation.formats.visualprm400k_raw",
    "trl-stepwise": "annotation.formats.trl_stepwise",
}


class UnknownFormat(ValueError):
    pass


class ExportRefused(ValueError):
    """Export options that contradict each other or the format; the message says which and why."""


@dataclass(frozen=True)
class ExportFileResult:
    written: int
    path: Path
    meta_path: Path | None = None  # InternVL's meta json, for formats its fine-tuning loader reads
    meta_root: str | None = None


def export_module(format_name: str):
    try:
        return importlib.import_module(EXPORT_FORMATS[format_name])
    except KeyError:
        raise UnknownFormat(
            f"unknown export format {format_name!r}; choose one of {', '.join(sorted(EXPORT_FORMATS))}"
        ) from None


def dataset_export(
    *,
    project: Project,
    format_name: str,
    out: BinaryIO,
    filters: ExportFilters | None = None,
    options: dict | None = None,
    progress: Callable[[int], None] | None = None,
    id_range: tuple[int, int] | None = None,
) -> int:
    """Write `project` in `format_name` to `out`; returns the number of records written.

    `id_range` (first, last solution id) writes one part of the export, for `export_parts_join`.
    """
    module = export_module(format_name)
    records: Iterable[ExportRecord] = export_records(project=project, filters=filters or ExportFilters(), id_range=id_range)
    if progress is not None:
        records = _counting(records, progress)
    return module.write(records, out, options=dict(options or {}))


def internvl_meta_formats() -> frozenset[str]:
    """The formats InternVL's fine-tuning reads through a meta json (their modules write one)."""
    return frozenset(name for name in EXPORT_FORMATS if hasattr(export_module(name), "internvl_meta"))


def internvl_meta_beside(*, format_name: str, data_name: str, length: int, root: str = "images/") -> dict:
    """The meta json for the file `data_name` (a name in the same folder), its images unzipped into `root`."""
    return export_module(format_name).internvl_meta(name=Path(data_name).stem, annotation=data_name, root=root,
                                                    length=length)


def file_formats(format_name: str) -> dict[str, str]:
    """The file kinds `format_name` writes, name -> suffix, the default first."""
    module = export_module(format_name)
    return dict(getattr(module, "FILE_FORMATS", None) or {module.SUFFIX.lstrip("."): module.SUFFIX})


def export_file_format(*, format_name: str, file_name: str, file_format: str | None = None) -> str:
    """The file kind to write: `file_format` when given, else the one `file_name`'s suffix names, else the default.

    A suffix naming another kind (train.jsonl with parquet, or a parquet name for a JSON-lines-only
    format) is refused rather than writing bytes the name belies.
    """
    kinds = file_formats(format_name)
    suffix = Path(file_name).suffix.lower()
    by_suffix = next((name for name, kind_suffix in kinds.items() if kind_suffix == suffix), None)
    if by_suffix is None and suffix == ".json" and "jsonl" in kinds:
        by_suffix = "jsonl"  # JSON lines under .json, as `datasets` and others read them
    known_elsewhere = by_suffix is None and suffix in {".jsonl", ".parquet"}
    if file_format is not None:
        if file_format not in kinds:
            raise ExportRefused(f"{format_name} writes {' or '.join(kinds)}, not {file_format}")
        if (by_suffix is not None and by_suffix != file_format) or known_elsewhere:
            raise ExportRefused(
                f"{file_name} ends in {suffix} but the file format asked for is {file_format}: "
                f"name the file {Path(file_name).stem}{kinds[file_format]} or leave the file format out"
            )
        return file_format
    if known_elsewhere:
        raise ExportRefused(f"{file_name} ends in {suffix}, but {format_name} writes {' or '.join(kinds)} only")
    return by_suffix or next(iter(kinds))


def dataset_export_file(
    *,
    project: Project,
    format_name: str,
    path: Path,
    filters: ExportFilters | None = None,
    options: dict | None = None,
    file_format: str | None = None,
    image_root: str | None = None,
    progress: Callable[[int], None] | None = None,
    id_range: tuple[int, int] | None = None,
) -> ExportFileResult:
    """Write `project` to the file `path`, and beside it what the format's clients need to load it.

    For the visualprm400k format that is InternVL's meta json (`<stem>.meta.json`): `root` is
    `image_root`, by default the file's own folder. Raises ExportRefused before writing anything.
    """
    module = export_module(format_name)
    options = dict(options or {})
    chosen = export_file_format(format_name=format_name, file_name=path.name, file_format=file_format)
    if hasattr(module, "FILE_FORMATS"):
        options["file_format"] = chosen
    try:
        neutral_option(options)
    except ValueError as exc:
        raise ExportRefused(str(exc)) from None
    with path.open("wb") as handle:
        written = dataset_export(
            project=project, format_name=format_name, out=handle, filters=filters, options=options, progress=progress,
            id_range=id_range,
        )
    if not hasattr(module, "internvl_meta"):
        return ExportFileResult(written=written, path=path)
    root = image_root or str(path.resolve().parent)
    root = root if root.endswith("/") else root + "/"  # the loader joins, or for s3:// concatenates, root and path
    meta = module.internvl_meta(name=path.stem, annotation=str(path.resolve()), root=root, length=written)
    meta_path = path.with_name(f"{path.stem}.meta.json")
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportFileResult(written=written, path=path, meta_path=meta_path, meta_root=root)


def export_parts_join(*, file_format: str, parts: Iterable[BinaryIO], out: BinaryIO) -> None:
    """Join export parts (the same export over consecutive id ranges, in order) into the one file a
    single pass would have written: JSON lines end to end; parquet's row groups copied in order,
    one at a time (memory stays flat), under the schema of the first part that has rows."""
    if file_format == "jsonl":
        for part in parts:
            shutil.copyfileobj(part, out, length=1 << 20)
        return
    if file_format != "parquet":
        raise ValueError(f"no way to join {file_format} parts")
    import pyarrow.parquet as pq

    readers = [pq.ParquetFile(part) for part in parts]
    if not readers:
        raise ValueError("no parts to join")
    with_rows = [reader for reader in readers if reader.metadata.num_rows] or readers[:1]
    with pq.ParquetWriter(out, with_rows[0].schema_arrow) as writer:
        for reader in with_rows:
            for group in range(reader.num_row_groups):
                writer.write_table(reader.read_row_group(group))


def _counting(records: Iterable[ExportRecord], progress: Callable[[int], None]):
    for record in records:
        yield record
        progress(1)
