"""Imports from uploaded files: saved to a temporary folder, unpacked if the format reads a folder."""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile

from annotation.formats.records import DatasetImportError
from annotation.models import Project
from annotation.services.dataset_import import ImportResult, dataset_import

# Formats whose source is a folder; their upload is a zip of it.
FOLDER_FORMATS = frozenset({"mathv"})
# Refuse archives that would unpack to more than this (zip bombs).
MAX_UNPACKED_BYTES = 8 * 1024**3


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
    """Unpack the zip into `folder`/<its stem>; a zip holding one top folder yields that folder."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile:
        raise DatasetImportError("expected a zip of the dataset folder", file=archive_path.name, field="file") from None
    target = folder / archive_path.stem
    with archive:
        members = [m for m in archive.infolist() if not m.filename.startswith("__MACOSX/")]
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise DatasetImportError("archive unpacks to more than the allowed size", file=archive_path.name, field="file")
        # extractall drops absolute paths and '..' parts, so nothing lands outside `target`.
        archive.extractall(target, members=members)
    entries = list(target.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


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
            project=project, format_name=format_name, path=path, images=images_path, options=options, user=user
        )
