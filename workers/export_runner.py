"""The "export" job: write a project's export to a file and offer it for download."""

from __future__ import annotations

from django.core.files.base import File
from django.db import transaction

from workers.models import Job, JobChunk
from workers.services import chunk_finish, chunk_heartbeat, job_progress_add


def run_export(chunk: JobChunk) -> dict:
    """Write a project's export to a file under MEDIA_ROOT/jobs/ and offer it for download."""
    import tempfile
    from datetime import datetime

    from annotation.selectors import ExportFilters
    from annotation.services.dataset_export import dataset_export, export_module

    job = chunk.job
    params = job.params
    filter_params = dict(params.get("filters", {}))
    for key in ("since", "until"):
        if filter_params.get(key):
            filter_params[key] = datetime.fromisoformat(filter_params[key])
    filters = ExportFilters(**filter_params)
    module = export_module(params["format"])
    reported = 0

    def progress(n: int) -> None:
        nonlocal reported
        reported += n
        if reported % 500 == 0:
            job_progress_add(job_id=job.pk, units=500)
            chunk_heartbeat(chunk=chunk)

    with tempfile.TemporaryFile() as out:
        written = dataset_export(project=job.project, format_name=params["format"], out=out, filters=filters, progress=progress)
        out.seek(0)
        with transaction.atomic():
            name = f"{job.project.name.replace('/', '-')}-{params['format']}-job{job.pk}{module.SUFFIX}"
            job.result_file.save(name, File(out), save=False)
            Job.objects.filter(pk=job.pk).update(result_file=job.result_file.name, progress_total=max(written, 1))
            chunk.size = max(written, 1)
            chunk_finish(chunk=chunk, counts={"records": written}, progress_already_reported=reported - reported % 500)
    return {"records": written}
