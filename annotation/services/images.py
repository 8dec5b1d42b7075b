"""Checking and storing images once by content hash."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
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


def image_store(*, data: bytes, written: list[str] | None = None) -> tuple[Image, bool]:
    """Check `data` and return (the Image row for it, whether it was created); row and file are made only if new.

    Names of files written are appended to `written` so a failed import can remove them.
    """
    checked = image_check(data=data)
    existing = Image.objects.filter(sha256=checked.sha256).first()
    if existing is not None:
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
        saved = default_storage.save(name, ContentFile(data))
        if written is not None:
            written.append(saved)
        name = saved
    image.file.name = name
    image.save()
    return image, True
