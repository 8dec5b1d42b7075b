"""Importing datasets: all-or-nothing, idempotent, streaming.

A parser (one module per format in `annotation.formats`) turns source records into
`ParsedSolution`s; this module stores them in batches inside one transaction. Any bad
record raises `DatasetImportError` naming file, line and field, the transaction rolls
back and image files written by this import are removed: the database is as before.
Re-importing the same records creates nothing new (items by external id, solutions by key).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotation.formats.reading import ImageSource
from annotation.formats.records import DatasetImportError, ParsedSolution
from annotation.models import (
    AutoLabel,
    GoldLabel,
    ImportRecord,
    Item,
    ItemImage,
    Project,
    Solution,
    Step,
)
from annotation.services.images import ImageRejected, image_store

# format name -> module in annotation.formats providing `parse(source) -> Iterator[ParsedSolution]`
IMPORT_FORMATS: dict[str, str] = {
    "mathv": "annotation.formats.mathv",
    "visualprocessbench": "annotation.formats.visualprocessbench",
    "visualprm400k-raw": "annotation.formats.visualprm400k_raw",
    "visualprm400k": "annotation.formats.visualprm400k",
    "prm800k": "annotation.formats.prm800k",
    "processbench": "annotation.formats.processbench",
    "trl-stepwise": "annotation.formats.trl_stepwise",
}

ProgressCallback = Callable[[int], None]


@dataclass
class ImportSource:
    """What a parser reads: the main file (or folder), the images, format options."""

    path: Path
    images: ImageSource
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class ImportResult:
    items_created: int = 0
    items_existing: int = 0
    solutions_created: int = 0
    solutions_existing: int = 0
    steps_created: int = 0
    gold_labels_created: int = 0
    auto_labels_created: int = 0
    images_created: int = 0
    import_id: int | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "import_id"}


def import_parser(format_name: str) -> Callable[[ImportSource], Iterator[ParsedSolution]]:
    try:
        module_path = IMPORT_FORMATS[format_name]
    except KeyError:
        raise DatasetImportError(
            f"unknown import format {format_name!r}; choose one of {', '.join(sorted(IMPORT_FORMATS))}"
        ) from None
    return importlib.import_module(module_path).parse


def dataset_import(
    *,
    project: Project,
    format_name: str,
    path: Path,
    images: Path | None = None,
    options: dict | None = None,
    user=None,
    progress: ProgressCallback | None = None,
    batch_size: int = 2000,
) -> ImportResult:
    """Import `path` (in `format_name`) into `project`. Raises DatasetImportError on bad input."""
    parse = import_parser(format_name)
    path = Path(path)
    if not path.exists():
        raise DatasetImportError("file not found", file=str(path))
    # A dataset folder holds its own images unless told otherwise; a single file names them relative to itself.
    if images:
        image_root = Path(images)
    elif path.is_dir():
        image_root = path
    elif (path.parent / "images.zip").is_file():
        image_root = path.parent / "images.zip"  # VisualProcessBench ships test.jsonl beside images.zip
    else:
        image_root = path.parent
    image_source = ImageSource(image_root)
    source = ImportSource(path=path, images=image_source, options=dict(options or {}))
    written_files: list[str] = []
    try:
        with transaction.atomic():
            writer = _BatchWriter(project=project, source=source, written_files=written_files, progress=progress)
            batch: list[ParsedSolution] = []
            for parsed in parse(source):
                batch.append(parsed)
                if len(batch) >= batch_size:
                    writer.write(batch)
                    batch = []
            if batch:
                writer.write(batch)
            record = ImportRecord.objects.create(
                project=project,
                format=format_name,
                source_name=path.name,
                status=ImportRecord.Status.DONE,
                created_by=user if getattr(user, "pk", None) else None,
                counts=writer.result.as_dict(),
                finished_at=timezone.now(),
            )
            writer.result.import_id = record.pk
            return writer.result
    except BaseException:
        # The rows are rolled back; remove the image files only this import wrote.
        for name in written_files:
            default_storage.delete(name)
        raise
    finally:
        image_source.close()


class _BatchWriter:
    def __init__(self, *, project: Project, source: ImportSource, written_files: list[str], progress):
        self.project = project
        self.source = source
        self.written_files = written_files
        self.progress = progress
        self.result = ImportResult()
        self.item_ids: dict[str, int] = {}  # external id -> item pk, for items met in this file
        self.image_ids: dict[str, int] = {}  # source path -> image pk
        self.seen: dict[tuple[str, str], int] = {}  # (item external id, solution key) -> line

    def write(self, batch: list[ParsedSolution]) -> None:
        for parsed in batch:
            self._check(parsed)
        self._write_items(batch)
        new = self._new_solutions(batch)
        self._write_solutions(new)
        if self.progress is not None:
            self.progress(len(batch))

    def _check(self, parsed: ParsedSolution) -> None:
        name = parsed.file or self.source.name
        key = (parsed.item.external_id, parsed.key)
        if key in self.seen:
            raise DatasetImportError(
                f"duplicate record: item {parsed.item.external_id!r}, solution {parsed.key!r} "
                f"already appeared on line {self.seen[key]}",
                file=name,
                line=parsed.line,
                field="id",
            )
        self.seen[key] = parsed.line
        n = len(parsed.steps)
        if n == 0:
            raise DatasetImportError("solution has no steps", file=name, line=parsed.line, field="steps")
        for labels, label_field in ((parsed.gold, "labels"), (parsed.auto, "labels")):
            if labels is not None and len(labels) != n:
                raise DatasetImportError(
                    f"{n} steps but {len(labels)} labels", file=name, line=parsed.line, field=label_field
                )

    def _image_id(self, parsed: ParsedSolution, position: int, path: str) -> int:
        if path in self.image_ids:
            return self.image_ids[path]
        field_name = f"image[{position}]"
        try:
            data = parsed.item.image_data.get(path) or self.source.images.read(path)
        except KeyError:
            raise DatasetImportError(
                f"image {path!r} not found in {self.source.images.name}",
                file=parsed.file or self.source.name,
                line=parsed.line,
                field=field_name,
            ) from None
        try:
            image, created = image_store(data=data, written=self.written_files)
        except ImageRejected as exc:
            raise DatasetImportError(f"image {path!r}: {exc}", file=parsed.file or self.source.name, line=parsed.line, field=field_name) from None
        self.result.images_created += int(created)
        self.image_ids[path] = image.pk
        return image.pk

    def _write_items(self, batch: list[ParsedSolution]) -> None:
        wanted: dict[str, ParsedSolution] = {}
        for parsed in batch:
            if parsed.item.external_id not in self.item_ids:
                wanted.setdefault(parsed.item.external_id, parsed)
        if not wanted:
            return
        existing = dict(
            Item.objects.filter(project=self.project, external_id__in=list(wanted)).values_list("external_id", "id")
        )
        self.item_ids.update(existing)
        self.result.items_existing += len(existing)
        to_create = [parsed for external_id, parsed in wanted.items() if external_id not in existing]
        if not to_create:
            return
        items = [
            Item(
                project=self.project,
                external_id=parsed.item.external_id,
                question=parsed.item.question,
                options=parsed.item.options,
                answer=parsed.item.answer,
                data_source=parsed.item.data_source,
                metadata=parsed.item.metadata,
            )
            for parsed in to_create
        ]
        Item.objects.bulk_create(items)
        links = []
        for item, parsed in zip(items, to_create, strict=True):
            self.item_ids[item.external_id] = item.pk
            for position, path in enumerate(parsed.item.image_paths):
                links.append(
                    ItemImage(item_id=item.pk, image_id=self._image_id(parsed, position, path), position=position, source_path=path)
                )
        ItemImage.objects.bulk_create(links)
        self.result.items_created += len(items)

    def _new_solutions(self, batch: list[ParsedSolution]) -> list[ParsedSolution]:
        item_ids = {self.item_ids[parsed.item.external_id] for parsed in batch}
        existing = set(Solution.objects.filter(item_id__in=item_ids).values_list("item_id", "key"))
        new = [p for p in batch if (self.item_ids[p.item.external_id], p.key) not in existing]
        self.result.solutions_existing += len(batch) - len(new)
        return new

    def _write_solutions(self, new: list[ParsedSolution]) -> None:
        if not new:
            return
        solutions = [
            Solution(
                item_id=self.item_ids[parsed.item.external_id],
                key=parsed.key,
                policy_model=parsed.policy_model,
                response=parsed.response,
                final_answer=parsed.final_answer,
                is_correct=parsed.is_correct,
                metadata=parsed.metadata,
            )
            for parsed in new
        ]
        Solution.objects.bulk_create(solutions)
        steps = [
            Step(solution_id=solution.pk, index=index, text=text)
            for solution, parsed in zip(solutions, new, strict=True)
            for index, text in enumerate(parsed.steps)
        ]
        Step.objects.bulk_create(steps, batch_size=5000)
        gold: list[GoldLabel] = []
        auto: list[AutoLabel] = []
        cursor = 0
        for parsed in new:
            n = len(parsed.steps)
            solution_steps = steps[cursor : cursor + n]
            cursor += n
            if parsed.gold is not None:
                gold.extend(
                    GoldLabel(step_id=step.pk, value=value, source=GoldLabel.Source.IMPORTED, origin=parsed.gold_origin)
                    for step, value in zip(solution_steps, parsed.gold, strict=True)
                    if value is not None
                )
            if parsed.auto is not None:
                auto.extend(
                    AutoLabel(
                        step_id=step.pk,
                        kind=label.kind,
                        source=label.source,
                        score=label.score,
                        value=label.value,
                        num_correct=label.num_correct,
                        num_total=label.num_total,
                    )
                    for step, label in zip(solution_steps, parsed.auto, strict=True)
                    if label is not None
                )
        GoldLabel.objects.bulk_create(gold, batch_size=5000)
        AutoLabel.objects.bulk_create(auto, batch_size=5000)
        self.result.solutions_created += len(solutions)
        self.result.steps_created += len(steps)
        self.result.gold_labels_created += len(gold)
        self.result.auto_labels_created += len(auto)
