"""The "export" job: write a project's export (and its images zip) to files and offer them for download.

Progress counts solutions read, out of the solutions the filters select (counted first), so the
bar and its numbers are in one unit; the records written (a format may skip some) are a count.
"""

from __future__ import annotations

import re
import tempfile
from datetime import datetime
from pathlib import Path

from django.core.files.base import File
from django.db import transaction

from workers.models import Job, JobChunk
from workers.services import ProgressReporter, chunk_finish


def _filters(params: dict):
    from annotation.selectors import ExportFilters

    filter_params = dict(params.get("filters", {}))
    for key in ("since", "until"):
        if filter_params.get(key):
            filter_params[key] = datetime.fromisoformat(filter_params[key])
    return ExportFilters(**filter_params)


def run_export(chunk: JobChunk) -> dict:
    from annotation.api.streaming import format_images_write
    from annotation.selectors import export_records, export_solution_ids
    from annotation.services.dataset_export import dataset_export_file, export_module, file_formats

    job = chunk.job
    params = job.params
    format_name = params["format"]
    filters = _filters(params)
    module = export_module(format_name)
    kinds = file_formats(format_name)
    kind = params.get("file_format") or next(iter(kinds))
    total = sum(1 for _ in export_solution_ids(project=job.project, filters=filters))
    stem = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', job.project.name).strip('-') or 'project'}-{format_name}-job{job.pk}"
    counts: dict = {}
    with tempfile.TemporaryDirectory(prefix="stepmark-export-") as scratch, ProgressReporter(chunk=chunk) as reporter:
        reporter.total(total)
        reporter.flush()
        path = Path(scratch) / f"{stem}{kinds[kind]}"
        result = dataset_export_file(
            project=job.project, format_name=format_name, path=path, filters=filters,
            options=params.get("options") or {}, file_format=kind if hasattr(module, "FILE_FORMATS") else None,
            progress=reporter.add,
        )
        reporter.flush()
        counts["solutions_read"] = total
        counts["records_written"] = result.written
        images_path = None
        if params.get("images_zip"):
            images_path = Path(scratch) / f"{stem}-images.zip"
            with images_path.open("wb") as handle:
                counts["images"] = format_images_write(
                    module=module, records=export_records(project=job.project, filters=filters), out=handle
                )
            reporter.flush()
        with transaction.atomic():
            with path.open("rb") as handle:
                job.result_file.save(path.name, File(handle), save=False)
            fields = {"result_file": job.result_file.name, "progress_total": total, "progress_done": total}
            if images_path is not None:
                with images_path.open("rb") as handle:
                    job.images_file.save(images_path.name, File(handle), save=False)
                fields["images_file"] = job.images_file.name
            Job.objects.filter(pk=job.pk).update(**fields)
            chunk_finish(chunk=chunk, counts=counts, progress_already_reported=chunk.size)
    return counts
