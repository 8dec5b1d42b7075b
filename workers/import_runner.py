"""The "import" job: a worker imports the uploads the import page saved, all or nothing.

The rows go in with `dataset_import` (one transaction: a refused record leaves nothing behind);
live progress and the lease go through a side connection (workers.services.ProgressReporter), so
the page sees them while the import's transaction is open, and a cancel stops it at its next batch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.db import transaction

from annotation.api.uploads import FOLDER_FORMATS, staged_source
from annotation.formats.records import DatasetImportError
from annotation.services.dataset_import import dataset_import
from workers.errors import PermanentJobError
from workers.import_services import staging_folder
from workers.models import Job, JobChunk
from workers.services import ProgressReporter, chunk_finish, job_fail

BATCH_SIZE = 200  # solutions per write: a progress step every few hundred solutions


def record_estimate(path: Path, *, format_name: str) -> int:
    """How many solutions the import will read, counted from the lines (0 when the format has no lines to count)."""
    if format_name in FOLDER_FORMATS:
        files = sorted((path / "responses").glob("*.jsonl")) if (path / "responses").is_dir() else []
    elif path.suffix.lower() == ".jsonl":
        files = [path]
    else:
        return 0  # JSON arrays, parquet: the page shows the count without a total
    total = 0
    for file in files:
        with file.open("rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def run_import(chunk: JobChunk) -> dict:
    job = chunk.job
    params = job.params
    folder = staging_folder(params["folder"])
    if not (folder / params["file"]).is_file():
        raise PermanentJobError(f"the uploaded file {params['source_name']!r} is no longer on the server: upload it again")
    try:
        with ProgressReporter(chunk=chunk) as reporter:
            try:
                path = staged_source(folder=folder, format_name=params["format"], file_name=params["file"])
                estimate = record_estimate(path, format_name=params["format"])
                reporter.total(estimate)
                reporter.flush()
                result = dataset_import(
                    project=job.project,
                    format_name=params["format"],
                    path=path,
                    images=folder / params["images"] if params.get("images") else None,
                    options=params.get("options") or {},
                    user=job.created_by,
                    progress=reporter.add,
                    batch_size=BATCH_SIZE,
                    confined=True,
                )
            except DatasetImportError as exc:
                job_fail(chunk=chunk, error=_named(exc, params))
                return {}
            reporter.flush()
        counts = result.as_dict()
        read = result.solutions_created + result.solutions_existing
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(progress_total=read, params={**params, "import_id": result.import_id})
            chunk_finish(chunk=chunk, counts=counts, progress_set=read)
        return counts
    finally:
        job.refresh_from_db(fields=["status"])
        if job.is_finished:
            shutil.rmtree(folder, ignore_errors=True)


def _named(exc: DatasetImportError, params: dict) -> str:
    """The error as a person uploaded it: the saved (sanitised) file name is replaced by the one they chose."""
    if exc.file == params["file"] and params["source_name"] != params["file"]:
        exc.file = params["source_name"]
    return str(exc)
