"""Streaming readers shared by the importers: JSON lines, JSON arrays, images from a folder or zip."""

from __future__ import annotations

import codecs
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from annotation.formats.records import DatasetImportError


def iter_json_records(path: Path, *, label: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from a .jsonl file, or (index + 1, object) from a .json array.

    JSON lines are read one at a time, so memory does not grow with the file. Errors name the
    file as `label` (default: its name), e.g. with the folder it sits in inside a dataset.
    Text must be UTF-8 (a byte-order mark is allowed) and storable: no NUL, no lone surrogate.
    """
    name = label or path.name
    if path.suffix == ".json":
        yield from _iter_json_document(path, name)
        return
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1:
                raw = _strip_bom(raw, name)
            line = _decode(raw, file=name, line=line_number)
            if not line.strip():
                continue
            record = _loads(line, file=name, line=line_number)
            if not isinstance(record, dict):
                raise DatasetImportError(f"expected a JSON object, got {type(record).__name__}", file=name, line=line_number)
            yield line_number, record


# Other Unicode encodings are told apart by their byte-order mark; anything else that is not
# UTF-8 is most often Latin-1 or Windows-1252.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _strip_bom(raw: bytes, name: str) -> bytes:
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :]
    for bom, encoding in _FOREIGN_BOMS:
        if raw.startswith(bom):
            raise DatasetImportError(f"the file is {encoding} text; save it as UTF-8", file=name, line=1)
    return raw


def _decode(raw: bytes, *, file: str, line: int) -> str:
    if b"\x00" in raw:  # valid UTF-8, but never in JSON text: UTF-16 without a byte-order mark
        raise DatasetImportError(
            f"NUL byte at column {raw.index(0) + 1}: the file looks like UTF-16 text; save it as UTF-8",
            file=file,
            line=line,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", errors="replace")
        column = len(prefix) + 1
        raise DatasetImportError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column} "
            "(Latin-1, Windows-1252 or UTF-16?); save the file as UTF-8",
            file=file,
            line=line,
            field=json_error_field(prefix, len(prefix)),
        ) from None


# Cheap test on the raw line before walking the record: JSON writes NUL and surrogates as escapes.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _loads(text: str, *, file: str, line: int) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetImportError(
            f"malformed JSON: {exc.msg} (column {exc.colno})",
            file=file,
            line=exc.lineno if "\n" in text.rstrip("\r\n") else line,
            field=json_error_field(text, exc.pos),
        ) from None
    except RecursionError:
        raise DatasetImportError("JSON nested too deeply", file=file, line=line) from None
    if _SUSPECT_ESCAPE.search(text):
        _check_storable(value, file=file, line=line)
    return value


def _check_storable(value: Any, *, file: str, line: int, path: str = "") -> None:
    """Refuse strings PostgreSQL cannot store (NUL) and lone surrogates (not Unicode text)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, dict):
            for key, child in current.items():
                _check_text(key, file=file, line=line, field=where or None)
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(current, list):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(current))
        elif isinstance(current, str):
            _check_text(current, file=file, line=line, field=where or None)


def _check_text(text: str, *, file: str, line: int, field: str | None) -> None:
    if "\x00" in text:
        raise DatasetImportError("text holds a NUL character (\\u0000), which cannot be stored", file=file, line=line, field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise DatasetImportError(
            f"text holds a lone surrogate (\\u{code:04x}), which is not valid Unicode", file=file, line=line, field=field
        ) from None


def json_error_field(text: str, position: int) -> str | None:
    """The dotted path of the object key being read at `position` of a malformed JSON text.

    A person fixing a broken line wants to know where it broke; the decoder only gives a column.
    """
    keys: list[str | None] = []  # one entry per open object: its latest key
    containers: list[str] = []
    last_string: str | None = None
    index = 0
    while index < min(position, len(text)):
        char = text[index]
        if char == '"':
            end = index + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            last_string = text[index + 1 : end]
            index = end + 1
            continue
        if char == ":" and containers and containers[-1] == "{" and last_string is not None:
            keys[-1] = last_string
        elif char in "{[":
            containers.append(char)
            if char == "{":
                keys.append(None)
        elif char in "}]" and containers:
            if containers.pop() == "{":
                keys.pop()
        if not char.isspace():
            last_string = None
        index += 1
    path = [key for key in keys if key]
    return ".".join(path) if path else None


def _iter_json_document(path: Path, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    raw = _strip_bom(path.read_bytes(), name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start, end = raw.rfind(b"\n", 0, exc.start) + 1, raw.find(b"\n", exc.start)
        _decode(raw[start : end if end >= 0 else len(raw)], file=name, line=raw.count(b"\n", 0, exc.start) + 1)
        raise  # not reached: _decode raises for the same bytes
    document = _loads(text, file=name, line=1)
    records = document if isinstance(document, list) else [document]
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DatasetImportError(f"record {position} is not a JSON object", file=name, line=position)
        yield position, record


class RecordReader:
    """Typed field access on one record, raising errors that name file, line and field."""

    def __init__(self, record: dict[str, Any], *, file: str, line: int):
        self.record = record
        self.file = file
        self.line = line

    def error(self, message: str, field: str | None = None) -> DatasetImportError:
        return DatasetImportError(message, file=self.file, line=self.line, field=field)

    def get(self, field: str, kind: type | tuple[type, ...], *, required: bool = True, default: Any = None) -> Any:
        if field not in self.record or self.record[field] is None:
            if required:
                raise self.error("missing required field", field)
            return default
        value = self.record[field]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(f"expected {_type_names(kind)}, got bool", field)
        if not isinstance(value, kind):
            raise self.error(f"expected {_type_names(kind)}, got {type(value).__name__}", field)
        return value

    def text(self, field: str, *, required: bool = True, default: str = "") -> str:
        value = self.get(field, (str, int, float), required=required, default=default)
        return value if isinstance(value, str) else str(value)

    def string_list(self, field: str, *, required: bool = True) -> list[str]:
        value = self.get(field, list, required=required, default=[])
        for position, element in enumerate(value):
            if not isinstance(element, str):
                raise self.error(f"element {position} is {type(element).__name__}, expected str", f"{field}[{position}]")
        return value

    def label_list(self, field: str, values: tuple = (-1, 0, 1)) -> list[int]:
        raw = self.get(field, list)
        labels = []
        for position, element in enumerate(raw):
            if isinstance(element, bool) or not isinstance(element, int) or element not in values:
                raise self.error(f"label {element!r} is not one of {list(values)}", f"{field}[{position}]")
            labels.append(element)
        return labels


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


class ImageSource:
    """Where an import finds its images: a folder or a zip, addressed by the paths in the records."""

    def __init__(self, root: Path | None):
        self.root = root
        self._zip: zipfile.ZipFile | None = None
        self._zip_names: dict[str, str] = {}
        if root is not None and root.is_file():
            if not zipfile.is_zipfile(root):
                raise DatasetImportError("images archive is not a zip file", file=root.name)
            self._zip = zipfile.ZipFile(root)
            for name in self._zip.namelist():
                if not name.endswith("/"):
                    self._zip_names.setdefault(_normalise(name), name)

    @property
    def name(self) -> str:
        return self.root.name if self.root is not None else "(no image source)"

    def read(self, path: str) -> bytes:
        """Bytes of the image at `path`, as the record names it. KeyError if absent."""
        relative = _normalise(path)
        if self._zip is not None:
            member = self._zip_names.get(relative)
            if member is None:
                # Archives often wrap everything in one top folder (images/...): match on the tail too.
                member = next((n for k, n in self._zip_names.items() if k.endswith("/" + relative)), None)
            if member is None:
                raise KeyError(path)
            info = self._zip.getinfo(member)
            return zip_member_read(
                self._zip, info, limit=settings.STEPMARK_MAX_IMAGE_BYTES, what=f"image {path!r}", file=self.name
            )
        if self.root is None:
            raise KeyError(path)
        candidate = (self.root / relative).resolve()
        if self.root.resolve() not in candidate.parents or not candidate.is_file():
            raise KeyError(path)
        if candidate.stat().st_size > settings.STEPMARK_MAX_IMAGE_BYTES:
            raise DatasetImportError(
                f"image {path!r} is larger than the allowed {settings.STEPMARK_MAX_IMAGE_BYTES} bytes", file=self.name
            )
        return candidate.read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _normalise(path: str) -> str:
    parts = [part for part in PurePosixPath(path.replace("\\", "/")).parts if part not in ("", ".", "/")]
    return "/".join(parts)


# ---------------------------------------------------------------- format options


def int_option(options: dict, name: str, *, default: int, minimum: int = 1, file: str = "") -> int:
    """A whole-number option (e.g. `max_steps`), refused with a message naming it when it is not one."""
    value = options.get(name, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetImportError(f"option {name!r} must be a whole number, got {value!r}", file=file, field=f"options.{name}")
    if value < minimum:
        raise DatasetImportError(f"option {name!r} must be at least {minimum}, got {value}", file=file, field=f"options.{name}")
    return value


def option_path(folder: Path, options: dict, name: str, *, default: str | None = None, confined: bool) -> Path | None:
    """The path an option names, relative to the dataset `folder`; None when neither set nor defaulted.

    Confined (uploads), it must stay inside the folder: no absolute path, no '..', no symlink out,
    and errors name only the option and the value given, never where the server keeps files.
    The operator's command line (not confined) may name any path.
    """
    raw = options.get(name, default)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise DatasetImportError(f"option {name!r} must be a path, got {type(raw).__name__}", field=f"options.{name}")
    path = folder / raw
    if not confined:
        return path
    relative = PurePosixPath(raw.replace("\\", "/"))
    outside = DatasetImportError(
        f"option {name!r} must name a path inside the uploaded folder (relative, without '..')", field=f"options.{name}"
    )
    if relative.is_absolute() or ".." in relative.parts or raw[1:2] == ":":  # C:\... too
        raise outside
    root = folder.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:  # a symlink pointing out
        raise outside
    if not resolved.exists():
        raise DatasetImportError(f"option {name!r}: no {raw!r} in the uploaded folder", field=f"options.{name}")
    return resolved


# ---------------------------------------------------------------- zip archives


def zip_member_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int, what: str, file: str) -> bytes:
    """A member's bytes, read in blocks and refused once they pass `limit` or the ratio limit.

    The sizes in a zip's directory are the sender's word: they are checked first, and the bytes
    actually inflated are counted as they come, so a lying header cannot make us hold more.
    """
    out = bytearray()
    for block in _zip_member_blocks(archive, info, limit=limit, what=what, file=file):
        out += block
    return bytes(out)


def zip_member_copy(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, *, limit: int, what: str, file: str
) -> int:
    """Write a member to `target` block by block under the same limits; returns the bytes written."""
    written = 0
    with target.open("wb") as handle:
        for block in _zip_member_blocks(archive, info, limit=limit, what=what, file=file):
            handle.write(block)
            written += len(block)
    return written


_BLOCK = 1024 * 1024


def _zip_member_blocks(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int, what: str, file: str
) -> Iterator[bytes]:
    ratio = settings.STEPMARK_MAX_ZIP_RATIO
    # Tiny members compress absurdly well by nature (a blank page); only large ones can be bombs.
    ratio_floor = _BLOCK

    def refuse(reason: str) -> DatasetImportError:
        return DatasetImportError(f"{what}: {reason}", file=file)

    if info.file_size > limit:
        raise refuse(f"unpacks to more than the allowed {limit} bytes")
    if info.file_size > ratio_floor and info.file_size > ratio * max(info.compress_size, 1):
        raise refuse(f"compressed more than {ratio}:1, refused as a zip bomb")
    read = 0
    try:
        with archive.open(info) as member:
            while block := member.read(_BLOCK):
                read += len(block)
                if read > limit:
                    raise refuse(f"unpacks to more than the allowed {limit} bytes")
                if read > ratio_floor and read > ratio * max(info.compress_size, 1):
                    raise refuse(f"compressed more than {ratio}:1, refused as a zip bomb")
                yield block
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise refuse(f"cannot be unpacked ({exc})") from None


def archive_member_name(path: str) -> str:
    """`path` as a name inside a zip we write: relative, '/'-separated, never climbing out ('..')."""
    parts = [part for part in PurePosixPath(path.replace("\\", "/")).parts if part not in ("", ".", "..", "/")]
    return "/".join(parts) or "unnamed"
