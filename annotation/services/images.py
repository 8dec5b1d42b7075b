"""Checking and storing images once by content hash; removing a file only when no committed row uses it."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from PIL import Image as PILImage

from annotation.models import Image, image_upload_path


class ImageRejected(ValueError):
    """The bytes are not an image Stepmark will store; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckedImage:
    sha256: str
    format: str
    width: int
    height: int
    size_bytes: int


def image_check(*, data: bytes) -> CheckedImage:
    """Validate bytes as a whole, decodable image within the size and pixel limits."""
    max_bytes = settings.STEPMARK_MAX_IMAGE_BYTES
    max_pixels = settings.STEPMARK_MAX_IMAGE_PIXELS
    if len(data) == 0:
        raise ImageRejected("image file is empty")
    if len(data) > max_bytes:
        raise ImageRejected(f"image is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            image_format = probe.format or ""
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
                    "(possible decompression bomb)"
                )
            probe.verify()
        # verify() misses truncated pixel data in some formats: decode fully to be sure.
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as decoded:
                decoded.load()
    except ImageRejected:
        raise
    except PILImage.DecompressionBombError as exc:
        raise ImageRejected(f"image exceeds the pixel limit (decompression bomb): {exc}") from None
    except PILImage.UnidentifiedImageError:
        raise ImageRejected("not an image (Pillow cannot identify the format)") from None
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombWarning) as exc:
        raise ImageRejected(f"corrupt image: {exc}") from None
    if width <= 0 or height <= 0:
        raise ImageRejected("image has no pixels")
    return CheckedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        format=image_format.upper(),
        width=width,
        height=height,
        size_bytes=len(data),
    )


def _image_lock(sha256: str) -> None:
    """Hold the image's hash until the current transaction ends (PostgreSQL advisory lock).

    Whoever stores, repairs or removes an image's file holds it, so of two imports storing the same
    new image the second waits until the first committed its row or rolled back and cleaned up.
    """
    with connection.cursor() as cursor:
        # 60 bits of the hash: a collision only makes one import wait for another.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(sha256[:15], 16)])


def image_store(*, data: bytes, written: list[str] | None = None) -> tuple[Image, bool]:
    """Check `data` and return (the Image row for it, whether it was created); row and file are made only if new.

    Call it inside the transaction that will use the row. A row whose file is missing gets it
    written again. The file names of rows created here are appended to `written`, for
    `image_files_discard` after a rollback.
    """
    checked = image_check(data=data)
    _image_lock(checked.sha256)
    existing = Image.objects.filter(sha256=checked.sha256).first()
    if existing is not None:
        if not default_storage.exists(existing.file.name):
            default_storage.save(existing.file.name, ContentFile(data))  # repair: the row is what counts
        return existing, False
    image = Image(
        sha256=checked.sha256,
        format=checked.format,
        width=checked.width,
        height=checked.height,
        size_bytes=checked.size_bytes,
    )
    name = image_upload_path(image, "")
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(data))
    image.file.name = name
    image.save()
    if written is not None:
        written.append(name)
    return image, True


def image_files_discard(*, names: list[str]) -> int:
    """After a rollback, delete the image files named unless a committed row points at them; the count removed.

    Each check holds the image's lock: an import storing the same image meanwhile has either
    committed its row (the file stays) or will find the file gone and write it again.
    """
    removed = 0
    for name in names:
        with transaction.atomic():
            _image_lock(PurePosixPath(name).stem)
            if not Image.objects.filter(file=name).exists():
                default_storage.delete(name)
                removed += 1
    return removed
