"""Imports from uploaded files: saved to a temporary folder, unpacked if the format reads a folder."""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from annotation.formats.reading import archive_member_name, zip_member_copy
from annotation.formats.records import DatasetImportError
from annotation.models import Project
from annotation.services.dataset_import import ImportResult, dataset_import

# Formats whose source is a folder; their upload is a zip of it.
FOLDER_FORMATS = frozenset({"mathv"})


def _safe_name(name: str, default: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").name).lstrip(".")
    return cleaned or default


def _save(upload: UploadedFile, folder: Path, default_name: str) -> Path:
    target = folder / _safe_name(upload.name, default_name)
    with target.open("wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    return target


def _unpack(archive_path: Path, folder: Path) -> Path:
    """Unpack the zip into `folder`/<its stem>; a zip holding one top folder yields that folder.

    Members are inflated block by block and counted as they come (the sizes in the zip's own
    directory are the sender's word): refused past the total size, or at a zip bomb's ratio.
    """
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile:
        raise DatasetImportError("expected a zip of the dataset folder", file=archive_path.name, field="file") from None
    target = (folder / archive_path.stem).resolve()
    budget = settings.STEPMARK_MAX_UNPACKED_BYTES
    with archive:
        members = [m for m in archive.infolist() if not m.filename.startswith("__MACOSX/")]
        if sum(m.file_size for m in members) > budget:
            raise DatasetImportError(
                f"archive unpacks to more than the allowed {budget} bytes", file=archive_path.name, field="file"
            )
        target.mkdir(parents=True)
        for member in members:
            name = archive_member_name(member.filename)
            destination = target / name
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            # Symlink members are written as plain files holding the link text: nothing points out.
            budget -= zip_member_copy(
                archive, member, destination, limit=budget, what=f"member {name!r}", file=archive_path.name
            )
    entries = list(target.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def upload_stage(*, folder: Path, upload: UploadedFile, images: UploadedFile | None = None) -> tuple[str, str]:
    """Save an upload (and its images) into `folder` chunk by chunk, for a worker to import later.

    Returns the saved names (the images' is "" when there are none). Django has already streamed a
    large upload to a temporary file (FILE_UPLOAD_MAX_MEMORY_SIZE); nothing here reads it whole.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = _save(upload, folder, "upload")
    images_name = ""
    if images is not None:
        images_dir = folder / "images"
        images_dir.mkdir()
        images_name = str(_save(images, images_dir, "images.zip").relative_to(folder))
    return path.name, images_name


def staged_source(*, folder: Path, format_name: str, file_name: str) -> Path:
    """The path a staged upload is imported from: the file itself, or for folder formats its unpacked zip."""
    path = folder / file_name
    if format_name in FOLDER_FORMATS:
        unpacked = folder / "unpacked"
        if unpacked.exists():  # a retried chunk unpacks afresh
            import shutil

            shutil.rmtree(unpacked)
        path = _unpack(path, unpacked)
    return path


def import_upload(
    *,
    project: Project,
    format_name: str,
    upload: UploadedFile,
    images: UploadedFile | None = None,
    options: dict | None = None,
    user=None,
) -> ImportResult:
    """Import an uploaded dataset into `project`. Raises DatasetImportError on bad input."""
    with tempfile.TemporaryDirectory(prefix="stepmark-import-") as scratch:
        folder = Path(scratch)
        path = _save(upload, folder, "upload")
        if format_name in FOLDER_FORMATS:
            path = _unpack(path, folder / "unpacked")
        images_path = None
        if images is not None:
            images_dir = folder / "images"
            images_dir.mkdir()
            images_path = _save(images, images_dir, "images.zip")
        return dataset_import(
            project=project,
            format_name=format_name,
            path=path,
            images=images_path,
            options=options,
            user=user,
            confined=True,  # options naming files stay inside the upload
        )
