"""Read-side queries. `export_records` streams solutions with their resolved step labels."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Q

from annotation.formats.records import ExportRecord, ExportStep
from annotation.models import AutoLabel, GoldLabel, HumanLabel, Item, ItemImage, Project, Solution, Step

LABEL_SOURCES = ("merged", "gold", "human", "mc", "auto", "prm", "none")


@dataclass(frozen=True)
class ExportFilters:
    """Which solutions and which labels an export takes.

    label_source: merged (gold > human majority > MC value > imported auto label), gold
    (adjudicated or imported human gold), human (majority of live annotators), mc (value label
    mc > mc_threshold), auto (imported machine labels), prm (score > 0.5), none (steps only).
    """

    label_source: str = "merged"
    only_adjudicated: bool = False  # gold labels set by a reviewer only
    only_agreed: bool = False  # human labels: every annotator of the step agrees
    complete_only: bool = False  # skip solutions with an unlabelled step
    labelled_only: bool = False  # skip solutions with no label at all
    since: datetime | None = None
    until: datetime | None = None
    mc_threshold: float = 0.0
    prm_threshold: float = 0.5
    prm_source: str | None = None  # PRM version name; None = any

    def __post_init__(self):
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label source {self.label_source!r} is not one of {', '.join(LABEL_SOURCES)}")


def export_solution_ids(*, project: Project, filters: ExportFilters) -> Iterator[int]:
    queryset = Solution.objects.filter(item__project=project)
    if filters.since is not None:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(created_at__lt=filters.until)
    if filters.only_adjudicated:
        queryset = queryset.filter(steps__gold_label__source=GoldLabel.Source.ADJUDICATED).distinct()
    yield from queryset.order_by("id").values_list("id", flat=True).iterator(chunk_size=5000)


def export_records(*, project: Project, filters: ExportFilters, chunk_size: int = 1000) -> Iterator[ExportRecord]:
    """Every solution of `project` that passes `filters`, with labels resolved, in import order."""
    chunk: list[int] = []
    for solution_id in export_solution_ids(project=project, filters=filters):
        chunk.append(solution_id)
        if len(chunk) >= chunk_size:
            yield from _records_for(chunk, filters)
            chunk = []
    if chunk:
        yield from _records_for(chunk, filters)


def _records_for(solution_ids: list[int], filters: ExportFilters) -> Iterator[ExportRecord]:
    """The records of one chunk, in a few queries. Records of one item share its decoded fields."""
    wanted = set(solution_ids)
    solutions = [
        row
        for row in Solution.objects.filter(_ids_lookup("id", solution_ids))
        .order_by("id")
        .values_list("id", "item_id", "key", "policy_model", "response", "final_answer", "is_correct", "metadata")
        if row[0] in wanted
    ]
    # Several solutions per item: fetch and decode each item's fields once per chunk.
    item_ids = {row[1] for row in solutions}
    items = {
        row[0]: row[1:]
        for row in Item.objects.filter(id__in=item_ids).values_list(
            "id", "external_id", "question", "options", "answer", "data_source", "metadata"
        )
    }
    images: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for item_id, source_path, file_name in (
        ItemImage.objects.filter(item_id__in=item_ids)
        .order_by("item_id", "position")
        .values_list("item_id", "source_path", "image__file")
    ):
        images[item_id].append((source_path or file_name, file_name))
    steps: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    step_ids: list[int] = []
    for step_id, solution_id, index, text in _plain_rows(
        Step.objects.filter(_ids_lookup("solution_id", solution_ids))
        .order_by("solution_id", "index")
        .values_list("id", "solution_id", "index", "text")
    ):
        if solution_id in wanted:
            steps[solution_id].append((step_id, index, text))
            step_ids.append(step_id)
    labels = _StepLabels(step_ids, filters)
    skip_unlabelled = filters.label_source != "none" and (filters.complete_only or filters.labelled_only)
    for solution_id, item_id, key, policy_model, response, final_answer, is_correct, metadata in solutions:
        export_steps = labels.export_steps(steps[solution_id])
        if skip_unlabelled:
            if filters.complete_only and any(step.label is None for step in export_steps):
                continue
            if filters.labelled_only and all(step.label is None for step in export_steps):
                continue
        external_id, question, options, answer, data_source, item_metadata = items[item_id]
        item_images = images.get(item_id, [])
        yield ExportRecord(
            item_external_id=external_id,
            question=question,
            options=options,
            answer=answer,
            data_source=data_source,
            item_metadata=item_metadata,
            image_paths=[path for path, _ in item_images],
            image_files=[name for _, name in item_images],
            solution_key=key,
            policy_model=policy_model,
            response=response,
            final_answer=final_answer,
            is_correct=is_correct,
            solution_metadata=metadata,
            steps=export_steps,
        )


def _plain_rows(queryset) -> list[tuple]:
    """The rows of a values_list of plain columns (numbers, text), fetched without the ORM's per-row work.

    Only for columns the database driver already returns as the right Python type: no
    JSON, no dates, no model converters. Per step this halves the cost of reading.
    """
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. an empty IN list: the ORM knows there are no rows without asking
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _ids_lookup(field: str, ids: list[int]) -> Q:
    """Rows whose `field` is among `ids`, or a superset the caller filters again.

    Imports give a chunk's rows dense ids, so a range scan on the index is the cheap query;
    a long IN list costs more to build, send and plan than the rows it finds. Sparse ids
    (filtered exports) keep the exact IN list, so a range never drags in many foreign rows.
    """
    low, high = min(ids, default=0), max(ids, default=0)
    if ids and high - low < 2 * len(ids):
        return Q(**{f"{field}__gte": low, f"{field}__lte": high})
    return Q(**{f"{field}__in": ids})


class _StepLabels:
    """Labels of a chunk of steps, fetched in a few queries, resolved per the filters.

    The dicts may hold labels of steps outside the chunk (see `_ids_lookup`); only the chunk's are read.
    """

    def __init__(self, step_ids: list[int], filters: ExportFilters):
        self.filters = filters
        source = filters.label_source
        in_chunk = _ids_lookup("step_id", step_ids)
        self.gold: dict[int, int] = {}
        self.human: dict[int, int] = {}
        self.mc: dict[int, tuple[float, int | None, int | None]] = {}
        self.auto: dict[int, int] = {}
        self.prm: dict[int, float] = {}
        if source == "none":
            return
        # MC counts travel with every export that has them (the Raw format needs them).
        for step_id, score, right, total in _plain_rows(
            AutoLabel.objects.filter(in_chunk, kind=AutoLabel.Kind.MC).values_list(
                "step_id", "score", "num_correct", "num_total"
            )
        ):
            self.mc[step_id] = (score, right, total)
        if source in ("merged", "gold"):
            gold = GoldLabel.objects.filter(in_chunk)
            if filters.only_adjudicated:
                gold = gold.filter(source=GoldLabel.Source.ADJUDICATED)
            self.gold = dict(gold.values_list("step_id", "value"))
        if source in ("merged", "human"):
            votes: dict[int, list[int]] = defaultdict(list)
            humans = HumanLabel.objects.filter(in_chunk)
            if filters.since is not None:
                humans = humans.filter(updated_at__gte=filters.since)
            if filters.until is not None:
                humans = humans.filter(updated_at__lt=filters.until)
            for step_id, value in humans.values_list("step_id", "value"):
                votes[step_id].append(value)
            self.human = {step_id: v for step_id, values in votes.items() if (v := self._majority(values)) is not None}
        if source in ("merged", "auto"):
            self.auto = dict(
                AutoLabel.objects.filter(in_chunk, kind=AutoLabel.Kind.IMPORTED)
                .exclude(value__isnull=True)
                .values_list("step_id", "value")
            )
        if source == "prm":
            prm = AutoLabel.objects.filter(in_chunk, kind=AutoLabel.Kind.PRM)
            if filters.prm_source:
                prm = prm.filter(source=filters.prm_source)
            self.prm = dict(prm.values_list("step_id", "score"))

    def _majority(self, values: list[int]) -> int | None:
        counts = Counter(values).most_common()
        if self.filters.only_agreed:
            return counts[0][0] if len(counts) == 1 else None
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return None  # a tie is not a majority
        return counts[0][0]

    def _mc_value(self, step_id: int) -> int | None:
        if step_id not in self.mc or self.mc[step_id][0] is None:
            return None
        return 1 if self.mc[step_id][0] > self.filters.mc_threshold else -1

    def label(self, step_id: int) -> int | None:
        source = self.filters.label_source
        if source == "gold":
            return self.gold.get(step_id)
        if source == "human":
            return self.human.get(step_id)
        if source == "mc":
            return self._mc_value(step_id)
        if source == "auto":
            return self.auto.get(step_id)
        if source == "prm":
            score = self.prm.get(step_id)
            return None if score is None else (1 if score > self.filters.prm_threshold else -1)
        if source == "merged":
            for value in (self.gold.get(step_id), self.human.get(step_id), self._mc_value(step_id), self.auto.get(step_id)):
                if value is not None:
                    return value
        return None

    def export_step(self, step_id: int, index: int, text: str) -> ExportStep:
        score, right, total = self.mc.get(step_id, (None, None, None))
        return ExportStep(index=index, text=text, label=self.label(step_id), mc_score=score, num_correct=right, num_total=total)

    def export_steps(self, rows: list[tuple[int, int, str]]) -> list[ExportStep]:
        """ExportSteps for (step id, index, text) rows; the common MC-only export skips the generic resolver."""
        if self.filters.label_source != "mc":
            return [self.export_step(step_id, index, text) for step_id, index, text in rows]
        threshold = self.filters.mc_threshold
        no_label = (None, None, None)
        result = []
        for step_id, index, text in rows:
            score, right, total = self.mc.get(step_id, no_label)
            label = None if score is None else (1 if score > threshold else -1)
            result.append(ExportStep(index, text, label, score, right, total))  # positional: fields in declared order
        return result
