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
