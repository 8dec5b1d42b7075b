"""Starting import jobs: the uploads are saved under MEDIA_ROOT for a worker, which imports them (all or nothing)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from annotation.api.uploads import upload_stage
from annotation.formats.guide import IMPORT_GUIDE
from annotation.models import ImportRecord, Project
from annotation.services.dataset_import import IMPORT_FORMATS
from workers.models import Job
from workers.services import QueueUnavailable, job_create

STAGING_DIR = "import-uploads"  # under MEDIA_ROOT, which the web app and the workers share


def staging_folder(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / STAGING_DIR / name


def import_job_start(
    *,
    project: Project,
    format_name: str,
    upload: UploadedFile,
    images: UploadedFile | None = None,
    options: dict | None = None,
    user=None,
) -> Job:
    """Save the uploads and queue their import; ValueError names an unknown format or option."""
    if format_name not in IMPORT_FORMATS:
        raise ValueError(f"unknown import format {format_name!r}; choose one of {', '.join(sorted(IMPORT_FORMATS))}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(IMPORT_GUIDE[format_name].options))
    if unknown:
        raise ValueError(f"the {format_name} format takes no option {', '.join(unknown)}")
    token = uuid.uuid4().hex
    folder = staging_folder(token)
    file_name, images_name = upload_stage(folder=folder, upload=upload, images=images)
    params = {
        "format": format_name,
        "folder": token,
        "file": file_name,
        "images": images_name,
        "options": options,
        "source_name": Path(upload.name or file_name).name,
        "images_name": Path(images.name).name if images is not None else "",
    }
    try:
        return job_create(kind=Job.Kind.IMPORT, project=project, params=params, user=user)
    except QueueUnavailable:
        raise  # the job is saved and its files stay for the re-queue
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def project_imports(*, project: Project, limit: int = 50) -> list[ImportRecord]:
    """The project's finished imports (page, API, command line), newest first, with who ran them."""
    return list(project.imports.select_related("created_by").order_by("-started_at", "-id")[:limit])


def project_import_jobs(*, project: Project, limit: int = 20):
    from workers.selectors import project_jobs

    return [job for job in project_jobs(project=project, limit=200) if job.kind == Job.Kind.IMPORT][:limit]
