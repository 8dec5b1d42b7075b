"""The images of exported records as one zip, at the paths the records name (beside a jsonl export)."""

from __future__ import annotations

import shutil
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


def images_zips_join(*, parts: Iterable[BinaryIO], out: BinaryIO) -> int:
    """One zip of the members of `parts` (images zips of an export's parts), each name once; returns count.

    Parts are written by images_zip_write, so an image two parts share is the same file under the same name.
    """
    import zipfile

    written: set[str] = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as joined:
        for part in parts:
            with zipfile.ZipFile(part) as archive:
                for member in archive.infolist():
                    if member.filename in written:
                        continue
                    with archive.open(member) as source, joined.open(member.filename, "w") as target:
                        shutil.copyfileobj(source, target, length=1 << 20)
                    written.add(member.filename)
    return len(written)
