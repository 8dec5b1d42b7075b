"""Read-side queries. `export_records` streams solutions with their resolved step labels."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from annotation.formats.records import ExportRecord, ExportStep
from annotation.models import AutoLabel, GoldLabel, HumanLabel, ItemImage, Project, Solution, Step

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
    solutions = list(
        Solution.objects.filter(id__in=solution_ids)
        .order_by("id")
        .values(
            "id", "key", "policy_model", "response", "final_answer", "is_correct", "metadata",
            "item_id", "item__external_id", "item__question", "item__options", "item__answer",
            "item__data_source", "item__metadata",
        )
    )
    item_ids = {row["item_id"] for row in solutions}
    images: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for item_id, source_path, file_name in (
        ItemImage.objects.filter(item_id__in=item_ids)
        .order_by("item_id", "position")
        .values_list("item_id", "source_path", "image__file")
    ):
        images[item_id].append((source_path or file_name, file_name))
    steps: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    step_ids: list[int] = []
    for step_id, solution_id, index, text in (
        Step.objects.filter(solution_id__in=solution_ids).order_by("solution_id", "index").values_list("id", "solution_id", "index", "text")
    ):
        steps[solution_id].append((step_id, index, text))
        step_ids.append(step_id)
    labels = _StepLabels(step_ids, filters)
    for row in solutions:
        export_steps = [labels.export_step(step_id, index, text) for step_id, index, text in steps[row["id"]]]
        if filters.label_source != "none":
            if filters.complete_only and any(step.label is None for step in export_steps):
                continue
            if filters.labelled_only and all(step.label is None for step in export_steps):
                continue
        item_images = images.get(row["item_id"], [])
        yield ExportRecord(
            item_external_id=row["item__external_id"],
            question=row["item__question"],
            options=row["item__options"],
            answer=row["item__answer"],
            data_source=row["item__data_source"],
            item_metadata=row["item__metadata"],
            image_paths=[path for path, _ in item_images],
            image_files=[name for _, name in item_images],
            solution_key=row["key"],
            policy_model=row["policy_model"],
            response=row["response"],
            final_answer=row["final_answer"],
            is_correct=row["is_correct"],
            solution_metadata=row["metadata"],
            steps=export_steps,
        )


class _StepLabels:
    """Labels of a chunk of steps, fetched in a few queries, resolved per the filters."""

    def __init__(self, step_ids: list[int], filters: ExportFilters):
        self.filters = filters
        source = filters.label_source
        self.gold: dict[int, int] = {}
        self.human: dict[int, int] = {}
        self.mc: dict[int, tuple[float, int | None, int | None]] = {}
        self.auto: dict[int, int] = {}
        self.prm: dict[int, float] = {}
        if source == "none":
            return
        # MC counts travel with every export that has them (the Raw format needs them).
        for step_id, score, right, total in AutoLabel.objects.filter(
            step_id__in=step_ids, kind=AutoLabel.Kind.MC
        ).values_list("step_id", "score", "num_correct", "num_total"):
            self.mc[step_id] = (score, right, total)
        if source in ("merged", "gold"):
            gold = GoldLabel.objects.filter(step_id__in=step_ids)
            if filters.only_adjudicated:
                gold = gold.filter(source=GoldLabel.Source.ADJUDICATED)
            self.gold = dict(gold.values_list("step_id", "value"))
        if source in ("merged", "human"):
            votes: dict[int, list[int]] = defaultdict(list)
            humans = HumanLabel.objects.filter(step_id__in=step_ids)
            if filters.since is not None:
                humans = humans.filter(updated_at__gte=filters.since)
            if filters.until is not None:
                humans = humans.filter(updated_at__lt=filters.until)
            for step_id, value in humans.values_list("step_id", "value"):
                votes[step_id].append(value)
            self.human = {step_id: v for step_id, values in votes.items() if (v := self._majority(values)) is not None}
        if source in ("merged", "auto"):
            self.auto = dict(
                AutoLabel.objects.filter(step_id__in=step_ids, kind=AutoLabel.Kind.IMPORTED)
                .exclude(value__isnull=True)
                .values_list("step_id", "value")
            )
        if source == "prm":
            prm = AutoLabel.objects.filter(step_id__in=step_ids, kind=AutoLabel.Kind.PRM)
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
