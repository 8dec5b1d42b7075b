"""Read-side queries. `export_records` streams solutions with their resolved step labels."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Q

from annotation.formats.records import ExportRecord, ExportStep
from annotation.models import AutoLabel, GoldLabel, HumanLabel, Item, ItemImage, Project, Solution, Step
from prm.core.merge import MergePolicy, human_majority, mc_value_label, solution_labels

LABEL_SOURCES = ("merged", "gold", "human", "mc", "auto", "prm", "judge", "none")


def judge_values(*conditions: Q, source: str = "", **filters) -> dict[int, int]:
    """step id -> the LLM judge's verdict (+1/0/-1) for the steps `conditions`/`filters` select: the
    labels of judge `source`, or ("") each step's newest judge label."""
    labels = AutoLabel.objects.filter(*conditions, kind=AutoLabel.Kind.JUDGE, value__isnull=False, **filters)
    if source:
        labels = labels.filter(source=source)
    return dict(labels.order_by("id").values_list("step_id", "value"))


@dataclass(frozen=True)
class ExportFilters:
    """Which solutions and which labels an export takes.

    label_source: merged (prm.core.merge, the labels training uses: gold > human majority > MC
    value or advantage label > imported auto label, with the consensus filter and neutral "skip"
    of `merge_policy`), gold (adjudicated or imported human gold), human (majority of live
    annotators), mc (value label mc > mc_threshold), auto (imported machine labels), prm
    (score > prm_threshold), judge (an LLM judge's verdicts, of `judge_source` or each step's
    newest), none (steps only). Merged labels keep neutral as 0; the binary
    "+"/"-" a PRM trains on is prm.core.merge.training_label of it.
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
    # The rest of the merge policy (merged labels); plain values so export jobs keep them as JSON.
    mc_label: Literal["value", "advantage"] = "value"
    advantage_tolerance: float = 0.0
    neutral: Literal["positive", "negative", "skip"] = "positive"
    consensus_filter: bool = False
    use_judge: bool = False
    judge_first: bool = False
    judge_source: str = ""
    mc_judge_consensus: bool = False

    def __post_init__(self):
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label source {self.label_source!r} is not one of {', '.join(LABEL_SOURCES)}")
        self.merge_policy  # noqa: B018 - a bad policy setting fails here, with MergePolicy's message

    @property
    def merge_policy(self) -> MergePolicy:
        return MergePolicy(
            use_gold=True, use_human=True, use_machine=True, only_agreed=self.only_agreed,
            mc_label=self.mc_label, mc_threshold=self.mc_threshold, advantage_tolerance=self.advantage_tolerance,
            neutral=self.neutral, consensus_filter=self.consensus_filter, use_judge=self.use_judge,
            judge_first=self.judge_first, judge_source=self.judge_source, mc_judge_consensus=self.mc_judge_consensus,
        )

    @classmethod
    def for_policy(cls, policy: MergePolicy, **filters) -> ExportFilters:
        """Merged-label filters that give exactly `policy`'s training labels (the split aside)."""
        if not (policy.use_gold and policy.use_human and policy.use_machine):
            raise ValueError("the merged export always uses gold, human and machine labels")
        return cls(
            label_source="merged", only_agreed=policy.only_agreed, mc_threshold=policy.mc_threshold,
            mc_label=policy.mc_label, advantage_tolerance=policy.advantage_tolerance, neutral=policy.neutral,
            consensus_filter=policy.consensus_filter, use_judge=policy.use_judge, judge_first=policy.judge_first,
            judge_source=policy.judge_source, mc_judge_consensus=policy.mc_judge_consensus, **filters,
        )


def export_solution_ids(*, project: Project, filters: ExportFilters, id_range: tuple[int, int] | None = None) -> Iterator[int]:
    """The ids of the solutions `filters` select, in order; `id_range` (first, last) keeps those between, inclusive."""
    queryset = Solution.objects.filter(item__project=project)
    if id_range is not None:
        queryset = queryset.filter(id__gte=id_range[0], id__lte=id_range[1])
    if filters.since is not None:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(created_at__lt=filters.until)
    if filters.only_adjudicated:
        queryset = queryset.filter(steps__gold_label__source=GoldLabel.Source.ADJUDICATED).distinct()
    yield from queryset.order_by("id").values_list("id", flat=True).iterator(chunk_size=5000)


def export_records(
    *, project: Project, filters: ExportFilters, chunk_size: int = 1000, id_range: tuple[int, int] | None = None
) -> Iterator[ExportRecord]:
    """Every solution of `project` that passes `filters` (within `id_range`), with labels resolved, in import order."""
    chunk: list[int] = []
    categories = bool(project.error_categories_enabled)
    for solution_id in export_solution_ids(project=project, filters=filters, id_range=id_range):
        chunk.append(solution_id)
        if len(chunk) >= chunk_size:
            yield from _records_for(chunk, filters, categories=categories)
            chunk = []
    if chunk:
        yield from _records_for(chunk, filters, categories=categories)


def _records_for(solution_ids: list[int], filters: ExportFilters, *, categories: bool = False) -> Iterator[ExportRecord]:
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
    step_categories = _error_categories(step_ids, filters) if categories else {}
    skip_unlabelled = filters.label_source != "none" and (filters.complete_only or filters.labelled_only)
    for solution_id, item_id, key, policy_model, response, final_answer, is_correct, metadata in solutions:
        export_steps = labels.export_steps(steps[solution_id])
        if step_categories:
            for (step_id, _, _), step in zip(steps[solution_id], export_steps, strict=True):
                step.error_categories = step_categories.get(step_id, [])
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
            carries_error_categories=categories,
        )


def _error_categories(step_ids: list[int], filters: ExportFilters) -> dict[int, list[str]]:
    """Each step's error categories from its live annotators' incorrect labels (distinct, sorted)."""
    humans = HumanLabel.objects.filter(_ids_lookup("step_id", step_ids), value=-1).exclude(error_category="")
    if filters.since is not None:
        humans = humans.filter(updated_at__gte=filters.since)
    if filters.until is not None:
        humans = humans.filter(updated_at__lt=filters.until)
    found: dict[int, set[str]] = defaultdict(set)
    for step_id, category in humans.values_list("step_id", "error_category"):
        found[step_id].add(category)
    return {step_id: sorted(names) for step_id, names in found.items()}


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
    """Labels of a chunk of steps, fetched in a few queries, resolved per the filters by prm.core.merge.

    The dicts may hold labels of steps outside the chunk (see `_ids_lookup`); only the chunk's are read.
    """

    def __init__(self, step_ids: list[int], filters: ExportFilters):
        self.filters = filters
        self.policy = filters.merge_policy
        source = filters.label_source
        in_chunk = _ids_lookup("step_id", step_ids)
        self.gold: dict[int, int] = {}
        self.human: dict[int, int] = {}
        self.mc: dict[int, tuple[float, int | None, int | None]] = {}
        self.auto: dict[int, int] = {}
        self.prm: dict[int, float] = {}
        self.judge: dict[int, int] = {}
        if source == "none":
            return
        # MC counts travel with every export that has them (the Raw format needs them).
        self.mc_value: dict[int, int] = {}  # the value label of a run without mc_i (adaptive, first-error)
        for step_id, score, right, total, value in _plain_rows(
            AutoLabel.objects.filter(in_chunk, kind=AutoLabel.Kind.MC).order_by("id").values_list(
                "step_id", "score", "num_correct", "num_total", "value"
            )
        ):
            self.mc[step_id] = (score, right, total)
            if score is None and value is not None:
                self.mc_value[step_id] = value
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
            self.human = {
                step_id: v for step_id, values in votes.items()
                if (v := human_majority(values, only_agreed=filters.only_agreed)) is not None
            }
        if source in ("merged", "auto"):
            self.auto = dict(
                AutoLabel.objects.filter(in_chunk, kind=AutoLabel.Kind.IMPORTED)
                .exclude(value__isnull=True)
                .values_list("step_id", "value")
            )
        if source == "judge" or (source == "merged" and (self.policy.use_judge or self.policy.mc_judge_consensus)):
            self.judge = judge_values(in_chunk, source=filters.judge_source)
        if source == "prm":
            prm = AutoLabel.objects.filter(in_chunk, kind=AutoLabel.Kind.PRM)
            if filters.prm_source:
                prm = prm.filter(source=filters.prm_source)
            self.prm = dict(prm.values_list("step_id", "score"))

    def _mc_score(self, step_id: int) -> float | None:
        return self.mc[step_id][0] if step_id in self.mc else None

    def labels(self, step_ids: list[int]) -> list[int | None]:
        """The labels of one solution's steps, in step order (advantage labels need the whole solution)."""
        source = self.filters.label_source
        if source == "merged":
            merged = solution_labels(
                gold=[self.gold.get(s) for s in step_ids], human=[self.human.get(s) for s in step_ids],
                mc_scores=[self._mc_score(s) for s in step_ids], imported=[self.auto.get(s) for s in step_ids],
                mc_values=[self.mc_value.get(s) for s in step_ids], judge=[self.judge.get(s) for s in step_ids],
                policy=self.policy,
            )
            return [label.value for label in merged]
        if source == "gold":
            return [self.gold.get(s) for s in step_ids]
        if source == "human":
            return [self.human.get(s) for s in step_ids]
        if source == "mc":
            return [
                mc_value_label(self._mc_score(s), threshold=self.filters.mc_threshold, value=self.mc_value.get(s))
                for s in step_ids
            ]
        if source == "auto":
            return [self.auto.get(s) for s in step_ids]
        if source == "judge":
            return [self.judge.get(s) for s in step_ids]
        if source == "prm":
            scores = [self.prm.get(s) for s in step_ids]
            return [None if score is None else (1 if score > self.filters.prm_threshold else -1) for score in scores]
        return [None] * len(step_ids)

    def export_steps(self, rows: list[tuple[int, int, str]]) -> list[ExportStep]:
        """ExportSteps for one solution's (step id, index, text) rows; the common MC-only export skips
        the per-solution lists (same value-label function, one pass)."""
        no_label = (None, None, None)
        if self.filters.label_source == "mc":
            threshold = self.filters.mc_threshold
            result = []
            for step_id, index, text in rows:
                score, right, total = self.mc.get(step_id, no_label)
                label = mc_value_label(score, threshold=threshold, value=self.mc_value.get(step_id))
                result.append(ExportStep(index, text, label, score, right, total))  # positional: fields in declared order
            return result
        labels = self.labels([step_id for step_id, _, _ in rows])
        return [
            ExportStep(index, text, label, *self.mc.get(step_id, no_label))
            for (step_id, index, text), label in zip(rows, labels, strict=True)
        ]
