"""Importing datasets: all-or-nothing, idempotent, streaming.

A parser (one module per format in `annotation.formats`) turns source records into
`ParsedSolution`s; this module stores them in batches inside one transaction. Any bad
record raises `DatasetImportError` naming file, line and field, the transaction rolls
back and image files written by this import are removed: the database is as before.
Re-importing the same records creates nothing new (items by external id, solutions by key).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from annotation.formats.reading import ImageSource
from annotation.formats.records import DatasetImportError, ParsedAutoLabel, ParsedSolution
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
from annotation.services.images import ImageRejected, image_files_discard, image_store

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
# A PostgreSQL import writing at least this many steps refreshes the planner statistics afterwards.
ANALYZE_AFTER_STEPS = 100_000


@dataclass
class ImportSource:
    """What a parser reads: the main file (or folder), the images, format options."""

    path: Path
    images: ImageSource
    options: dict = field(default_factory=dict)
    # Uploads: options naming files must stay inside the uploaded folder (the command line may not).
    confined: bool = False

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
    confined: bool = False,
) -> ImportResult:
    """Import `path` (in `format_name`) into `project`. Raises DatasetImportError on bad input.

    `confined` (uploads): file options must name paths inside the uploaded folder.
    """
    parse = import_parser(format_name)
    path = Path(path)
    if not path.exists():
        raise DatasetImportError("file not found", file=str(path))
    if path.is_file() and path.stat().st_size == 0:
        raise DatasetImportError("the file is empty", file=path.name)
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
    options = dict(options or {})
    if project.max_steps is not None:
        options.setdefault("max_steps", project.max_steps)  # the project's cap unless the import names one
    source = ImportSource(path=path, images=image_source, options=options, confined=confined)
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
        # The rows are rolled back; remove the image files this import added, unless another import uses them now.
        image_files_discard(names=written_files)
        raise
    finally:
        image_source.close()


class _BatchWriter:
    """Stores parsed solutions batch by batch inside the caller's transaction.

    Items, solutions, steps and labels go in with COPY (several times faster than INSERT for
    millions of steps), their ids reserved from the tables' sequences so steps can name their
    solution and labels their step.
    """

    # Tests turn this off to check COPY stores what the ORM's bulk_create would, row for row.
    use_copy: bool = True

    def __init__(self, *, project: Project, source: ImportSource, written_files: list[str], progress):
        self.project = project
        self.source = source
        self.written_files = written_files
        self.progress = progress
        self.result = ImportResult()
        self.item_ids: dict[str, int] = {}  # external id -> item pk, for items met in this file
        self.items_created: set[int] = set()  # item pks this import created: no stored solutions to look up
        self.image_ids: dict[str, int] = {}  # source path -> image pk
        self.seen: dict[tuple[str, str], int] = {}  # (item external id, solution key) -> line
        self.copy = self.use_copy
        self.sequences: dict[str, str] = {}  # table -> its id sequence
        self.analyze_registered = False

    def write(self, batch: list[ParsedSolution]) -> None:
        for parsed in batch:
            self._check(parsed)
        if self.copy:
            with self._constraints_checked_per_statement():
                self._write_items(batch)
                new = self._new_solutions(batch)
                if new:
                    self._copy_solutions(new)
        else:
            self._write_items(batch)
            new = self._new_solutions(batch)
            if new:
                self._create_solutions(new)
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
        _check_sizes(parsed, file=name)
        for labels, label_field in ((parsed.gold, "labels"), (parsed.auto, "labels")):
            if labels is not None and len(labels) != n:
                raise DatasetImportError(
                    f"{n} steps but {len(labels)} labels", file=name, line=parsed.line, field=label_field
                )
        # The database checks these too; checking here names the record instead of failing the batch.
        if parsed.gold is not None:
            for index, value in enumerate(parsed.gold):
                if value is not None and value not in (-1, 0, 1):
                    raise DatasetImportError(
                        f"step {index}: label {value!r} is not -1, 0 or 1", file=name, line=parsed.line, field="labels"
                    )
        if parsed.auto is not None:
            for index, label in enumerate(parsed.auto):
                if label is not None and (problem := _auto_label_problem(label)):
                    raise DatasetImportError(f"step {index}: {problem}", file=name, line=parsed.line, field="labels")

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
        if self.copy:
            item_ids = self._copy_items(to_create)
        else:
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
            item_ids = [item.pk for item in items]
        links = []
        for item_id, parsed in zip(item_ids, to_create, strict=True):
            self.item_ids[parsed.item.external_id] = item_id
            self.items_created.add(item_id)
            for position, path in enumerate(parsed.item.image_paths):
                links.append((item_id, self._image_id(parsed, position, path), position, path))
        if self.copy:
            self._copy(ItemImage, ("item_id", "image_id", "position", "source_path"), links)
        else:
            ItemImage.objects.bulk_create(
                ItemImage(item_id=item_id, image_id=image_id, position=position, source_path=path)
                for item_id, image_id, position, path in links
            )
        self.result.items_created += len(to_create)

    def _new_solutions(self, batch: list[ParsedSolution]) -> list[ParsedSolution]:
        # Items created by this import have only this import's solutions, which `_check` already deduplicated.
        item_ids = {self.item_ids[parsed.item.external_id] for parsed in batch} - self.items_created
        existing = set(Solution.objects.filter(item_id__in=item_ids).values_list("item_id", "key")) if item_ids else set()
        new = [p for p in batch if (self.item_ids[p.item.external_id], p.key) not in existing]
        self.result.solutions_existing += len(batch) - len(new)
        return new

    def _count(self, *, solutions: int, steps: int, gold: int, auto: int) -> None:
        self.result.solutions_created += solutions
        self.result.steps_created += steps
        self.result.gold_labels_created += gold
        self.result.auto_labels_created += auto

    # ---------------------------------------------------------------- portable path

    def _create_solutions(self, new: list[ParsedSolution]) -> None:
        solutions = [
            Solution(
                item_id=self.item_ids[parsed.item.external_id],
                project_id=self.project.pk,
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
                        estimate=imported_estimate(label.kind),
                    )
                    for step, label in zip(solution_steps, parsed.auto, strict=True)
                    if label is not None
                )
        GoldLabel.objects.bulk_create(gold, batch_size=5000)
        AutoLabel.objects.bulk_create(auto, batch_size=5000)
        self._count(solutions=len(solutions), steps=len(steps), gold=len(gold), auto=len(auto))

    # ---------------------------------------------------------------- PostgreSQL COPY path

    def _copy_items(self, to_create: list[ParsedSolution]) -> list[int]:
        now = timezone.now()
        item_ids = self._reserve_ids(Item, len(to_create))
        rows = [
            (item_id, self.project.pk, item.external_id, item.question, json.dumps(item.options), item.answer,
             item.data_source, json.dumps(item.metadata), now)
            for item_id, item in zip(item_ids, (parsed.item for parsed in to_create), strict=True)
        ]
        self._copy(Item, ("id", "project_id", "external_id", "question", "options", "answer", "data_source", "metadata",
                          "created_at"), rows)
        return item_ids

    def _copy_solutions(self, new: list[ParsedSolution]) -> None:
        now = timezone.now()
        priority = Solution._meta.get_field("priority").get_default()
        solution_ids = self._reserve_ids(Solution, len(new))
        step_ids = iter(self._reserve_ids(Step, sum(len(parsed.steps) for parsed in new)))
        solution_rows, step_rows, gold_rows, auto_rows = [], [], [], []
        imported = GoldLabel.Source.IMPORTED.value
        for solution_id, parsed in zip(solution_ids, new, strict=True):
            solution_rows.append((
                solution_id, self.item_ids[parsed.item.external_id], self.project.pk, parsed.key, parsed.policy_model,
                parsed.response, parsed.final_answer, parsed.is_correct, json.dumps(parsed.metadata), priority, now,
            ))
            gold, auto = parsed.gold, parsed.auto
            for index, text in enumerate(parsed.steps):
                step_id = next(step_ids)
                step_rows.append((step_id, solution_id, index, text))
                if gold is not None and gold[index] is not None:
                    gold_rows.append((step_id, gold[index], imported, parsed.gold_origin, now, now))
                if auto is not None and (label := auto[index]) is not None:
                    auto_rows.append((
                        step_id, label.kind, label.source, label.score, label.value, label.num_correct, label.num_total,
                        imported_estimate(label.kind), now,
                    ))
        self._copy(Solution, ("id", "item_id", "project_id", "key", "policy_model", "response", "final_answer", "is_correct",
                              "metadata", "priority", "created_at"), solution_rows)
        self._copy(Step, ("id", "solution_id", "index", "text"), step_rows)
        self._copy(GoldLabel, ("step_id", "value", "source", "origin", "created_at", "updated_at"), gold_rows)
        self._copy(AutoLabel, ("step_id", "kind", "source", "score", "value", "num_correct", "num_total", "estimate",
                               "created_at"), auto_rows)
        self._count(solutions=len(solution_rows), steps=len(step_rows), gold=len(gold_rows), auto=len(auto_rows))
        if not self.analyze_registered and self.result.steps_created >= ANALYZE_AFTER_STEPS:
            # Planner statistics lag a bulk load until autovacuum catches up; stale ones make the
            # first export choose slow plans. Refresh them once the rows are committed; a failure
            # here only leaves the statistics to autovacuum, so it must not fail the import.
            transaction.on_commit(_analyze_imported_tables, robust=True)
            self.analyze_registered = True

    @contextmanager
    def _constraints_checked_per_statement(self):
        """Check foreign keys as each COPY ends rather than all at commit (Django makes them deferred).

        Deferred, millions of checks wait in a queue and run at commit against rows long since
        evicted from the buffer cache; checked per statement, they find the rows just written.
        """
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")

    def _reserve_ids(self, model, count: int) -> list[int]:
        """`count` fresh primary keys from the table's own sequence, so concurrent inserts never collide."""
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if table not in self.sequences:
                cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                self.sequences[table] = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [self.sequences[table], count])
            return sorted(row[0] for row in cursor.fetchall())

    def _copy(self, model, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        quote = connection.ops.quote_name
        statement = f"COPY {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) FROM STDIN"
        # Same exception classes as bulk_create (django.db.IntegrityError ...) when a constraint fails.
        with connection.wrap_database_errors, connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


def imported_estimate(kind: str) -> str:
    """AutoLabel.estimate of an imported label: a dataset's MC counts (VisualPRM400K Raw) were sampled
    exhaustively, so they carry their score; other kinds are no MC estimate."""
    return AutoLabel.Estimate.IMPORTED_COUNTS if kind == AutoLabel.Kind.MC else AutoLabel.Estimate.NONE


def _analyze_imported_tables() -> None:
    with connection.cursor() as cursor:
        for model in (Item, ItemImage, Solution, Step, AutoLabel, GoldLabel):
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


# Text columns with a length in the schema: checked here so the error names the record, not the batch.
_ITEM_LIMITS = {name: Item._meta.get_field(name).max_length for name in ("external_id", "data_source")}
_SOLUTION_LIMITS = {name: Solution._meta.get_field(name).max_length for name in ("key", "policy_model")}
_ORIGIN_LIMIT = GoldLabel._meta.get_field("origin").max_length
_SOURCE_LIMIT = AutoLabel._meta.get_field("source").max_length


def _check_sizes(parsed: ParsedSolution, *, file: str) -> None:
    """Refuse texts past the schema's lengths and the question/step limits (settings)."""

    def refuse(message: str, field_name: str) -> DatasetImportError:
        return DatasetImportError(message, file=file, line=parsed.line, field=field_name)

    for values, limits in ((parsed.item, _ITEM_LIMITS), (parsed, _SOLUTION_LIMITS)):
        for name, limit in limits.items():
            value = getattr(values, name)
            if len(value) > limit:
                raise refuse(f"{len(value)} characters, more than the {limit} allowed", name)
    if len(parsed.gold_origin) > _ORIGIN_LIMIT:
        raise refuse(f"gold label origin of {len(parsed.gold_origin)} characters, more than the {_ORIGIN_LIMIT} allowed", "gold_origin")
    for label in parsed.auto or ():
        if label is not None and len(label.source) > _SOURCE_LIMIT:
            raise refuse(f"label source of {len(label.source)} characters, more than the {_SOURCE_LIMIT} allowed", "source")
    question_limit = settings.STEPMARK_MAX_QUESTION_CHARS
    if len(parsed.item.question) > question_limit:
        raise refuse(f"question of {len(parsed.item.question)} characters, more than the {question_limit} allowed", "question")
    step_limit = settings.STEPMARK_MAX_STEP_CHARS
    for index, text in enumerate(parsed.steps):
        if len(text) > step_limit:
            raise refuse(f"step {index} has {len(text)} characters, more than the {step_limit} allowed", f"steps[{index}]")


def _auto_label_problem(label: ParsedAutoLabel) -> str | None:
    """Why the database would refuse this machine label (its check constraints), or None."""
    if label.score is None and label.value is None:
        return "machine label has neither a score nor a value"
    if label.score is not None and not 0 <= label.score <= 1:
        return f"score {label.score!r} is outside [0, 1]"
    if label.value is not None and label.value not in (-1, 0, 1):
        return f"label {label.value!r} is not -1, 0 or 1"
    if (label.num_correct is None) != (label.num_total is None):
        return "num_correct and num_total come together"
    if label.num_total is not None and not (label.num_total > 0 and 0 <= label.num_correct <= label.num_total):
        return f"{label.num_correct} correct of {label.num_total} rollouts is not a valid count"
    return None
