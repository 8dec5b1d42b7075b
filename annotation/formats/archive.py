"""The images of exported records as one zip, at the paths the records name (beside a jsonl export)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from annotation.formats.records import ExportRecord


def images_zip_write(*, records: Iterable[ExportRecord], out: BinaryIO) -> int:
    """Write each distinct image of `records` into a zip at the path the records name; returns count.

    Images are stored once by hash, so the same file may sit under several source paths.
    """
    import zipfile

    from django.core.files.storage import default_storage

    written: set[str] = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for record in records:
            for path, file_name in zip(record.image_paths, record.image_files, strict=True):
                if path in written:
                    continue
                with default_storage.open(file_name, "rb") as handle:
                    archive.writestr(path, handle.read())
                written.add(path)
    return len(written)
