"""Streaming readers shared by the importers: JSON lines, JSON arrays, images from a folder or zip."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from annotation.formats.records import DatasetImportError


def iter_json_records(path: Path, *, label: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from a .jsonl file, or (index + 1, object) from a .json array.

    JSON lines are read one at a time, so memory does not grow with the file. Errors name the
    file as `label` (default: its name), e.g. with the folder it sits in inside a dataset.
    """
    name = label or path.name
    if path.suffix == ".json":
        yield from _iter_json_document(path)
        return
    with path.open("r", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetImportError(
                    f"malformed JSON: {exc.msg} (column {exc.colno})",
                    file=name,
                    line=line_number,
                    field=json_error_field(line, exc.pos),
                ) from None
            if not isinstance(record, dict):
                raise DatasetImportError(f"expected a JSON object, got {type(record).__name__}", file=name, line=line_number)
            yield line_number, record


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


def _iter_json_document(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    name = path.name
    try:
        with path.open("r", encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetImportError(f"malformed JSON: {exc.msg} (column {exc.colno})", file=name, line=exc.lineno) from None
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
            return self._zip.read(member)
        if self.root is None:
            raise KeyError(path)
        candidate = (self.root / relative).resolve()
        if self.root.resolve() not in candidate.parents or not candidate.is_file():
            raise KeyError(path)
        return candidate.read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _normalise(path: str) -> str:
    parts = [part for part in PurePosixPath(path.replace("\\", "/")).parts if part not in ("", ".", "/")]
    return "/".join(parts)
