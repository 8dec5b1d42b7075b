"""Exports as streaming HTTP downloads, without holding the file in memory.

Exporters write to a file object, but a response wants an iterator of chunks. So the exporter
runs in a helper thread writing into a chunk queue, while the records it reads are fetched by
the response's own thread (the one that owns the database connection; the helper never touches
the database) and handed over through a small bounded queue. Memory stays at a few hundred
records plus the chunks not yet sent.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from django.http import StreamingHttpResponse

from annotation.formats.archive import images_zip_write
from annotation.formats.records import ExportRecord
from annotation.models import Project
from annotation.selectors import ExportFilters, export_records
from annotation.services.dataset_export import (
    export_file_format,
    export_module,
    file_formats,
    internvl_meta_beside,
)

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
_END = object()
# How long the two threads wait on each other before checking whether the other is gone.
_POLL_SECONDS = 0.1


class _ChunkSink(io.RawIOBase):
    """A write-only, unseekable file whose bytes come out as chunks on a queue."""

    def __init__(self, chunks: queue.SimpleQueue):
        super().__init__()
        self._chunks = chunks
        self._buffer = bytearray()
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = len(data)
        self._buffer += data
        self._position += size
        if len(self._buffer) >= CHUNK_BYTES:
            self.push()
        return size

    def tell(self) -> int:
        return self._position

    def push(self) -> None:
        if self._buffer:
            self._chunks.put(bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        # An exporter may close its output (a TextIOWrapper does); what it wrote must still go out.
        self.push()
        super().close()


ExportJob = Callable[[list[Iterator[ExportRecord]], BinaryIO], None]


def stream_job(*, records: Callable[[], Iterable[ExportRecord]], passes: int, job: ExportJob) -> Iterator[bytes]:
    """Run `job(record_passes, out)` in a helper thread and yield what it writes to `out`.

    `records()` is called once per pass, in this thread; `job` gets one iterator per pass.
    """
    handoff: queue.Queue = queue.Queue(maxsize=256)
    chunks: queue.SimpleQueue = queue.SimpleQueue()
    stopped = threading.Event()
    failure: list[BaseException] = []

    def one_pass() -> Iterator[ExportRecord]:
        while True:
            try:
                record = handoff.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if stopped.is_set():
                    raise RuntimeError("export aborted: the download was closed") from None
                continue
            if record is _END:
                return
            yield record

    def run() -> None:
        sink = _ChunkSink(chunks)
        try:
            job([one_pass() for _ in range(passes)], sink)
        except BaseException as exc:  # handed to the response thread, which re-raises it
            failure.append(exc)
        finally:
            sink.push()
            chunks.put(_END)

    finished = threading.Event()  # the helper's end marker was taken off the chunk queue

    def drain(*, wait: bool = False) -> Iterator[bytes]:
        while not finished.is_set():
            try:
                chunk = chunks.get() if wait else chunks.get_nowait()
            except queue.Empty:
                return
            if chunk is _END:
                finished.set()
            else:
                yield chunk

    def hand_over(record) -> bool:
        while worker.is_alive():
            try:
                handoff.put(record, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    worker = threading.Thread(target=run, name="export-stream", daemon=True)
    worker.start()
    try:
        feeding = True
        for _ in range(passes):
            for record in records() if feeding else ():
                if not hand_over(record):
                    feeding = False
                    break
                yield from drain()
            feeding = feeding and hand_over(_END)
        yield from drain(wait=True)
        worker.join()
        if failure:
            raise failure[0]
    finally:
        stopped.set()


def format_images_write(*, module, records: Iterable[ExportRecord], out: BinaryIO) -> int:
    """images.zip for an export: a format that skips some records names their images itself."""
    if hasattr(module, "write_images"):
        return module.write_images(records, out)
    return images_zip_write(records=records, out=out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "project"


def export_file_name(*, project: Project, format_name: str, with_images: bool, file_format: str | None = None) -> str:
    kinds = file_formats(format_name)
    suffix = ".zip" if with_images else kinds[file_format or next(iter(kinds))]
    return f"{_slug(project.name)}-{format_name}{suffix}"


def export_response(
    *,
    project: Project,
    format_name: str,
    filters: ExportFilters,
    with_images: bool = False,
    options: dict | None = None,
    file_format: str | None = None,
) -> StreamingHttpResponse:
    """A download of `project` in `format_name`; with images, a zip of the data file and images.zip.

    For visualprm400k the zip also holds meta.json for InternVL's fine-tuning loader (root: the
    images/ folder images.zip unzips into). Raises UnknownFormat for a format with no exporter and
    ExportRefused for a file kind the format does not write.
    """
    module = export_module(format_name)
    options = dict(options or {})
    kind = export_file_format(format_name=format_name, file_name="", file_format=file_format)
    if hasattr(module, "FILE_FORMATS"):
        options["file_format"] = kind
    data_name = export_file_name(project=project, format_name=format_name, with_images=False, file_format=kind)

    def job(passes: list[Iterator[ExportRecord]], out: BinaryIO) -> None:
        # Parquet streams too: pyarrow writes row group after row group and never seeks back.
        if not with_images:
            module.write(passes[0], out, options=options)
            return
        with zipfile.ZipFile(out, "w") as archive:
            info = zipfile.ZipInfo(data_name, date_time=time.localtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as entry:
                written = module.write(passes[0], entry, options=options)
            if hasattr(module, "internvl_meta"):
                meta = internvl_meta_beside(format_name=format_name, data_name=data_name, length=written)
                archive.writestr(zipfile.ZipInfo("meta.json", date_time=info.date_time), json.dumps(meta, indent=2) + "\n")
            # Images are compressed already; store them.
            with archive.open(zipfile.ZipInfo("images.zip", date_time=info.date_time), "w", force_zip64=True) as entry:
                format_images_write(module=module, records=passes[1], out=entry)

    chunks = stream_job(
        records=lambda: export_records(project=project, filters=filters),
        passes=2 if with_images else 1,
        job=job,
    )
    media_type = getattr(module, "MEDIA_TYPES", {}).get(kind, module.MEDIA_TYPE)
    response = StreamingHttpResponse(chunks, content_type="application/zip" if with_images else media_type)
    file_name = export_file_name(project=project, format_name=format_name, with_images=with_images, file_format=kind)
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response
