"""The "export" job: parts written by any number of workers, then joined into the file (and images zip)
offered for download (workers.export_services says how the job is cut).

A part writes the export of its range of solution ids (and, when asked, the images zip of its
records) to the chunk's own file. Progress counts solutions read, out of those the filters selected
when the job started, so the bar and its numbers are in one unit; records written (a format may skip
some) are a count. The join copies the parts in order; the parts' files are deleted once the
result that replaces them is committed (or the job is cancelled: workers.services.chunk_files_release).
"""

from __future__ import annotations

import re
import tempfile
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction

from workers.models import Job, JobChunk
from workers.services import ProgressReporter, chunk_files_release, chunk_finish


def _filters(params: dict):
    from annotation.selectors import ExportFilters

    filter_params = dict(params.get("filters", {}))
    for key in ("since", "until"):
        if filter_params.get(key):
            filter_params[key] = datetime.fromisoformat(filter_params[key])
    return ExportFilters(**filter_params)


def _kind_and_suffix(params: dict) -> tuple[str, str]:
    from annotation.services.dataset_export import file_formats

    kinds = file_formats(params["format"])
    kind = params.get("file_format") or next(iter(kinds))
    return kind, kinds[kind]


def run_export(chunk: JobChunk) -> dict:
    return _join(chunk) if chunk.params.get("join") else _write_part(chunk)


def _write_part(chunk: JobChunk) -> dict:
    from annotation.api.streaming import format_images_write
    from annotation.selectors import export_records
    from annotation.services.dataset_export import dataset_export_file, export_module

    job = chunk.job
    params = job.params
    module = export_module(params["format"])
    kind, suffix = _kind_and_suffix(params)
    filters = _filters(params)
    id_range = (int(chunk.params["first_id"]), int(chunk.params["last_id"]))
    stem = f"part{chunk.index:05d}-attempt{chunk.attempts}"
    counts: dict = {}
    with tempfile.TemporaryDirectory(prefix="stepmark-export-") as scratch, ProgressReporter(chunk=chunk) as reporter:
        path = Path(scratch) / f"{stem}{suffix}"
        result = dataset_export_file(
            project=job.project, format_name=params["format"], path=path, filters=filters,
            options=params.get("options") or {}, file_format=kind if hasattr(module, "FILE_FORMATS") else None,
            progress=reporter.add, id_range=id_range,
        )
        reporter.flush()
        counts["solutions_read"] = reporter.reported
        counts["records_written"] = result.written
        # A part's images travel inside the part's one file: a zip of its data file and its images zip.
        if params.get("images_zip"):
            images_path = Path(scratch) / f"{stem}-images.zip"
            with images_path.open("wb") as handle:
                format_images_write(
                    module=module, records=export_records(project=job.project, filters=filters, id_range=id_range),
                    out=handle,
                )
            reporter.flush()
            path = _bundle(path, images_path, Path(scratch) / f"{stem}.zip")
        saved = _save_once(chunk, path)
        try:
            with transaction.atomic():
                JobChunk.objects.filter(pk=chunk.pk).update(result_file=saved)
                chunk_finish(chunk=chunk, counts=counts)
        except BaseException:
            default_storage.delete(saved)  # nothing committed refers to it: this attempt lost its claim
            raise
    return counts


DATA_MEMBER, IMAGES_MEMBER = "data", "images.zip"


def _bundle(data_path: Path, images_path: Path, bundle_path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(bundle_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as bundle:
        bundle.write(data_path, DATA_MEMBER)
        bundle.write(images_path, IMAGES_MEMBER)
    return bundle_path


def _save_once(chunk: JobChunk, path: Path) -> str:
    """Store a chunk's file under a name of its own (the storage adds a suffix should a dead attempt's be there)."""
    from workers.models import chunk_file_path

    with path.open("rb") as handle:
        return default_storage.save(chunk_file_path(chunk, path.name), File(handle))


def _join(chunk: JobChunk) -> dict:
    import zipfile

    from annotation.formats.archive import images_zips_join
    from annotation.services.dataset_export import export_parts_join

    job = chunk.job
    params = job.params
    kind, suffix = _kind_and_suffix(params)
    parts = list(JobChunk.objects.filter(job=job, stage__lt=chunk.stage).order_by("index"))
    missing = [part.index for part in parts if not part.result_file]
    if missing:
        raise RuntimeError(f"export parts {missing} have no file to join (deleted after an earlier join?)")
    stem = f"{re.sub(r'[^A-Za-z0-9._-]+', '-', job.project.name).strip('-') or 'project'}-{params['format']}-job{job.pk}"
    counts: dict = {}
    with tempfile.TemporaryDirectory(prefix="stepmark-export-") as scratch, ProgressReporter(chunk=chunk) as reporter:
        path = Path(scratch) / f"{stem}{suffix}"
        images_path = Path(scratch) / f"{stem}-images.zip" if params.get("images_zip") else None
        with ExitStack() as opened:
            files = [opened.enter_context(default_storage.open(part.result_file.name, "rb")) for part in parts]
            bundles = [opened.enter_context(zipfile.ZipFile(handle)) for handle in files] if images_path else []
            with path.open("wb") as out:
                data = [opened.enter_context(bundle.open(DATA_MEMBER)) for bundle in bundles] if bundles else files
                export_parts_join(file_format=kind, parts=data, out=out)
            reporter.flush()
            if images_path is not None:
                with images_path.open("wb") as out:
                    counts["images"] = images_zips_join(
                        parts=(opened.enter_context(bundle.open(IMAGES_MEMBER)) for bundle in bundles), out=out
                    )
                reporter.flush()
        saved = [_save_result(job, "result_file", path)]
        fields = {"result_file": saved[0]}
        if images_path is not None:
            saved.append(_save_result(job, "images_file", images_path))
            fields["images_file"] = saved[1]
        try:
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(**fields)
                chunk_finish(chunk=chunk, counts=counts)
                chunk_files_release(job_id=job.pk)  # the parts, now inside the joined file
        except BaseException:
            for name in saved:
                default_storage.delete(name)
            raise
    return counts


def _save_result(job: Job, field: str, path: Path) -> str:
    """Store a job's download where its FileField puts files (jobs/); the row is updated with the chunk's end."""
    file_field = getattr(job, field)
    with path.open("rb") as handle:
        return default_storage.save(file_field.field.generate_filename(job, path.name), File(handle))
