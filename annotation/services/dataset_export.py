"""Exporting datasets: streaming, with filters, in the formats the field uses.

Each exporter module in `annotation.formats` provides
`write(records: Iterable[ExportRecord], out: BinaryIO, *, options: dict) -> int` (records written),
plus `MEDIA_TYPE` and `SUFFIX`. Records come from `annotation.selectors.export_records`, so memory
stays flat however large the project.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import BinaryIO

from annotation.formats.records import ExportRecord
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
) -> int:
    """Write `project` in `format_name` to `out`; returns the number of records written."""
    module = export_module(format_name)
    records: Iterable[ExportRecord] = export_records(project=project, filters=filters or ExportFilters())
    if progress is not None:
        records = _counting(records, progress)
    return module.write(records, out, options=dict(options or {}))


def _counting(records: Iterable[ExportRecord], progress: Callable[[int], None]):
    for record in records:
        yield record
        progress(1)


def images_zip_write(*, records: Iterable[ExportRecord], out: BinaryIO) -> int:
    """Write each distinct image of `records` into a zip at the path the records name; returns count.

    Images are stored once by hash, so the same file may sit under several source paths.
    """
    import zipfile

    from django.core.files.storage import default_storage

    from annotation.formats.reading import archive_member_name

    written: set[str] = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for record in records:
            for path, file_name in zip(record.image_paths, record.image_files, strict=True):
                # Source paths come from imported data: never let one climb out of the unpacking folder.
                name = archive_member_name(path)
                if name in written:
                    continue
                with default_storage.open(file_name, "rb") as handle:
                    archive.writestr(name, handle.read())
                written.add(name)
    return len(written)
