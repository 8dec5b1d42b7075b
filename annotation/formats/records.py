"""Format-neutral records that every importer yields and every exporter reads.

Parsers turn one source line into a `ParsedSolution`; the writer in
`annotation.services.dataset_import` stores them in bulk. Exporters receive an
`ExportRecord` per solution from `annotation.selectors.export_records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DatasetImportError(Exception):
    """Bad input. Names the file, the line (1-based) and the field so a person can fix it."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [part for part in (self.file, f"line {self.line}" if self.line else "") if part]
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(slots=True)
class ParsedAutoLabel:
    kind: str  # "mc" | "prm" | "imported"
    source: str
    score: float | None = None
    value: int | None = None
    num_correct: int | None = None
    num_total: int | None = None


@dataclass(slots=True)
class ParsedItem:
    external_id: str
    question: str
    options: list = field(default_factory=list)
    answer: str = ""
    data_source: str = ""
    metadata: dict = field(default_factory=dict)
    image_paths: list[str] = field(default_factory=list)
    # Bytes carried inside the record itself (parquet `images` columns), by path; else read from the image source.
    image_data: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class ParsedSolution:
    item: ParsedItem
    key: str
    steps: list[str]
    response: str = ""
    policy_model: str = ""
    final_answer: str = ""
    is_correct: bool | None = None
    metadata: dict = field(default_factory=dict)
    # One entry per step (None: no label for that step).
    gold: list[int | None] | None = None
    gold_origin: str = ""
    auto: list[ParsedAutoLabel | None] | None = None
    line: int = 0  # where it came from, for error messages
    file: str = ""  # the file it came from, when not the import's main file


@dataclass(slots=True)
class ExportStep:
    index: int
    text: str
    label: int | None  # the resolved label for the chosen source; None = unlabelled
    mc_score: float | None = None
    num_correct: int | None = None
    num_total: int | None = None
    # Why annotators called the step incorrect (their error categories, distinct, sorted); empty: none said.
    error_categories: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ExportRecord:
    item_external_id: str
    question: str
    options: list
    answer: str
    data_source: str
    item_metadata: dict
    image_paths: list[str]  # paths as written in the export (source paths kept from import)
    image_files: list[str]  # storage names under MEDIA_ROOT, same order
    solution_key: str
    policy_model: str
    response: str
    final_answer: str
    is_correct: bool | None
    solution_metadata: dict
    steps: list[ExportStep]
    # The project uses error categories: formats that can carry an extension field write each
    # step's `error_categories` (one list per step, in step order); otherwise they write none.
    carries_error_categories: bool = False

    def error_categories(self, count: int | None = None) -> list[list[str]]:
        """Each step's error categories, for the first `count` steps (all by default)."""
        steps = self.steps if count is None else self.steps[:count]
        return [list(step.error_categories) for step in steps]


JsonDict = dict[str, Any]
