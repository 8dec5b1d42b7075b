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
