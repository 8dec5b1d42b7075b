"""Selectors for review: which solutions need a reviewer, and every label of every step side by side."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    TextChoices,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from annotation.models import (
    Assignment,
    AutoLabel,
    GoldLabel,
    HumanLabel,
    Item,
    LabelChange,
    Project,
    Solution,
    Step,
)

MC_THRESHOLD = 0.0
PRM_THRESHOLD = 0.5


@dataclass
class ReviewCandidate:
    solution_id: int
    item_external_id: str
    policy_model: str
    annotators: int
    reasons: list[str] = field(default_factory=list)
    adjudicated: bool = False


def _machine_value(kind: str, score: float | None) -> int | None:
    if score is None:
        return None
    threshold = MC_THRESHOLD if kind == AutoLabel.Kind.MC else PRM_THRESHOLD
    return 1 if score > threshold else -1


def review_queue(*, project: Project, include_adjudicated: bool = False) -> list[ReviewCandidate]:
    """Solutions with submitted human labels whose annotators disagree with each other or with the machines."""
    solution_ids = list(
        Assignment.objects.filter(solution__item__project=project, status=Assignment.Status.SUBMITTED)
        .values_list("solution_id", flat=True)
        .distinct()
    )
    if not solution_ids:
        return []
    humans: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for solution_id, step_id, value in HumanLabel.objects.filter(step__solution_id__in=solution_ids).values_list(
        "step__solution_id", "step_id", "value"
    ):
        humans[solution_id][step_id].append(value)
    machine: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for step_id, kind, score, verdict in AutoLabel.objects.filter(
        step__solution_id__in=solution_ids, kind__in=[AutoLabel.Kind.MC, AutoLabel.Kind.PRM, AutoLabel.Kind.JUDGE]
    ).values_list("step_id", "kind", "score", "value"):
        # A judge's neutral verdict is compared with nothing, as a human's neutral label.
        value = (verdict or None) if kind == AutoLabel.Kind.JUDGE else _machine_value(kind, score)
        if value is not None:
            machine[step_id].append((kind, value))
    adjudicated = set(
        GoldLabel.objects.filter(step__solution_id__in=solution_ids, source=GoldLabel.Source.ADJUDICATED)
        .values_list("step__solution_id", flat=True)
        .distinct()
    )
    info = {
        row["id"]: row
        for row in Solution.objects.filter(id__in=solution_ids).values("id", "item__external_id", "policy_model")
    }
    candidates = []
    for solution_id in sorted(solution_ids):
        reasons: set[str] = set()
        annotators = 0
        for step_id, values in humans[solution_id].items():
            annotators = max(annotators, len(values))
            if len(set(values)) > 1:
                reasons.add("annotators disagree")
            # Neutral (0) is not compared with the machines: they have no neutral.
            decided = [v for v in values if v != 0]
            for kind, value in machine.get(step_id, []):
                if decided and any(v != value for v in decided):
                    reasons.add(f"humans disagree with {kind.upper()}")
        if not reasons:
            continue
        if solution_id in adjudicated and not include_adjudicated:
            continue
        candidates.append(
            ReviewCandidate(
                solution_id=solution_id,
                item_external_id=info[solution_id]["item__external_id"],
                policy_model=info[solution_id]["policy_model"],
                annotators=annotators,
                reasons=sorted(reasons),
                adjudicated=solution_id in adjudicated,
            )
        )
    return candidates


def review_rows(*, solution: Solution) -> tuple[list[str], list[dict]]:
    """(annotator names, one row per step with each annotator's label, machine scores, the judge's
    verdict and reason, gold, history)."""
    steps = list(Step.objects.filter(solution=solution).order_by("index"))
    labels = list(
        HumanLabel.objects.filter(step__in=steps).select_related("annotator").order_by("annotator__username")
    )
    names = sorted({label.annotator.get_username() for label in labels})
    by_step: dict[int, dict[str, int]] = defaultdict(dict)
    categories: dict[int, dict[str, str]] = defaultdict(dict)
    for label in labels:
        by_step[label.step_id][label.annotator.get_username()] = label.value
        if label.error_category:
            note = f": {label.error_note}" if label.error_note else ""
            categories[label.step_id][label.annotator.get_username()] = label.error_category + note
    autos: dict[int, dict] = defaultdict(dict)
    for step_id, kind, source, score, right, total, value, reason in (
        AutoLabel.objects.filter(step__in=steps)
        .order_by("id")
        .values_list("step_id", "kind", "source", "score", "num_correct", "num_total", "value", "reason")
    ):
        autos[step_id][kind] = {
            "score": score, "right": right, "total": total, "value": value, "reason": reason, "source": source
        }
    gold = {g.step_id: g for g in GoldLabel.objects.filter(step__in=steps)}
    history: dict[int, list[LabelChange]] = defaultdict(list)
    for change in LabelChange.objects.filter(step__in=steps).select_related("changed_by", "annotator"):
        history[change.step_id].append(change)
    rows = []
    for step in steps:
        rows.append(
            {
                "step": step,
                "labels": [by_step[step.id].get(name) for name in names],
                # Each annotator's error category (with the note of "other"), "" where none.
                "categories": [categories[step.id].get(name, "") for name in names],
                "cells": [(by_step[step.id].get(name), categories[step.id].get(name, "")) for name in names],
                "mc": autos[step.id].get("mc"),
                "prm": autos[step.id].get("prm"),
                "judge": autos[step.id].get("judge"),
                "gold": gold.get(step.id),
                "history": history.get(step.id, []),
            }
        )
    return names, rows


# --- the browsable review list: every solution of a project, filtered and paged ---------------

PAGE_SIZE = 50


class ReviewFilterError(ValueError):
    """A filter parameter with a value the list does not know; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class ReviewStatus(TextChoices):
    UNSTARTED = "unstarted", "not started"
    IN_PROGRESS = "in_progress", "in progress"
    SUBMITTED = "submitted", "submitted by someone"
    COMPLETE = "complete", "submitted by k annotators"
    SKIPPED = "skipped", "skipped by someone"
    CANNOT_JUDGE = "cannot_judge", "cannot judge"
    FLAGGED = "flagged", "flagged as a bad problem"


class GoldFilter(TextChoices):
    ANY = "any", "some step has gold"
    NONE = "none", "no gold"
    ADJUDICATED = "adjudicated", "adjudicated by a reviewer"


@dataclass(frozen=True)
class ReviewFilters:
    """The review list's filters, as GET parameters of the same names (so links work without JS)."""

    status: str = ""
    annotator: str = ""
    data_source: str = ""
    policy_model: str = ""
    humans_disagree: bool = False
    machine: str = ""  # an AutoLabel kind: a human label of some step disagrees with that kind's label
    gold: str = ""
    label: int | None = None  # some step has a human label of this value
    q: str = ""  # text in the question or a step
    disputed: bool = False  # humans disagree, or disagree with a machine kind (DISPUTE_KINDS)

    PARAMS = ("status", "annotator", "data_source", "policy_model", "humans_disagree", "machine", "gold", "label", "q", "disputed")

    @classmethod
    def from_params(cls, params) -> ReviewFilters:
        """Parse GET parameters; ReviewFilterError (naming the parameter) for a value no filter takes."""
        text = {name: (params.get(name) or "").strip() for name in cls.PARAMS}
        if text["status"] and text["status"] not in ReviewStatus.values:
            raise ReviewFilterError("status", f"{text['status']!r} is not one of {', '.join(ReviewStatus.values)}")
        if text["gold"] and text["gold"] not in GoldFilter.values:
            raise ReviewFilterError("gold", f"{text['gold']!r} is not one of {', '.join(GoldFilter.values)}")
        if text["machine"] and text["machine"] not in AutoLabel.Kind.values:
            raise ReviewFilterError("machine", f"{text['machine']!r} is not one of {', '.join(AutoLabel.Kind.values)}")
        label = None
        if text["label"]:
            if text["label"] not in {"1", "0", "-1"}:
                raise ReviewFilterError("label", f"{text['label']!r} is not one of 1, 0, -1")
            label = int(text["label"])
        flags = {}
        for name in ("humans_disagree", "disputed"):
            if text[name] not in {"", "0", "1", "on"}:
                raise ReviewFilterError(name, f"{text[name]!r} is not 1 or 0")
            flags[name] = text[name] in {"1", "on"}
        if len(text["q"]) > 200:
            raise ReviewFilterError("q", "the search text is longer than 200 characters")
        return cls(
            status=text["status"], annotator=text["annotator"], data_source=text["data_source"],
            policy_model=text["policy_model"], machine=text["machine"], gold=text["gold"], label=label,
            q=text["q"], **flags,
        )

    def params(self) -> dict[str, str]:
        """The non-empty filters as GET parameters (for links that keep them)."""
        values = {
            "status": self.status, "annotator": self.annotator, "data_source": self.data_source,
            "policy_model": self.policy_model, "humans_disagree": "1" if self.humans_disagree else "",
            "machine": self.machine, "gold": self.gold, "label": "" if self.label is None else str(self.label),
            "q": self.q, "disputed": "1" if self.disputed else "",
        }
        return {name: value for name, value in values.items() if value}


def dispute_kinds() -> list[str]:
    """The machine kinds a dispute is counted against: every AutoLabel kind but imported dataset labels."""
    return [kind for kind in AutoLabel.Kind.values if kind != AutoLabel.Kind.IMPORTED]


def _machine_value_expression():
    """An automatic label as +1 / -1 (0 for a neutral imported one): its value, else its score over the
    kind's threshold (MC: mc > 0; every other scored kind: P(+) > 0.5)."""
    threshold = Case(When(kind=AutoLabel.Kind.MC, then=Value(MC_THRESHOLD)), default=Value(PRM_THRESHOLD))
    return Case(
        When(value__isnull=False, then=F("value")),
        When(score__gt=threshold, then=Value(1)),
        When(score__isnull=False, then=Value(-1)),
        default=Value(None),
        output_field=IntegerField(),
    )


def humans_disagree() -> Exists:
    """Some step of the solution has two human labels of different values."""
    other = HumanLabel.objects.filter(step=OuterRef("step"), annotator__isnull=False).exclude(value=OuterRef("value"))
    return Exists(HumanLabel.objects.filter(step__solution=OuterRef("pk")).filter(Exists(other)))


def humans_disagree_with(kind: str) -> Exists:
    """Some decided (non-neutral) human label of a step differs from a `kind` label of that step."""
    machine = (
        AutoLabel.objects.filter(step=OuterRef("step"), kind=kind)
        .annotate(machine_value=_machine_value_expression())
        .filter(machine_value__in=[1, -1])
        .exclude(machine_value=OuterRef("value"))
    )
    return Exists(HumanLabel.objects.filter(step__solution=OuterRef("pk")).exclude(value=0).filter(Exists(machine)))


def disputed() -> Q:
    condition = Q(humans_disagree())
    for kind in dispute_kinds():
        condition |= Q(humans_disagree_with(kind))
    return condition


def _adjudicated() -> Exists:
    return Exists(GoldLabel.objects.filter(step__solution=OuterRef("pk"), source=GoldLabel.Source.ADJUDICATED))


def _assignments(**conditions) -> Exists:
    return Exists(Assignment.objects.filter(solution=OuterRef("pk"), **conditions))


def review_solutions(*, project: Project, filters: ReviewFilters):
    """The project's solutions that pass `filters`, in import order (a queryset of ids to page)."""
    solutions = Solution.objects.filter(project=project)
    if filters.status == ReviewStatus.UNSTARTED:
        solutions = solutions.exclude(_assignments(is_gold_check=False))
    elif filters.status == ReviewStatus.IN_PROGRESS:
        solutions = solutions.filter(_assignments(status=Assignment.Status.ASSIGNED))
    elif filters.status == ReviewStatus.COMPLETE:
        submitted = (
            Assignment.objects.filter(solution=OuterRef("pk"), status=Assignment.Status.SUBMITTED, is_gold_check=False)
            .order_by().values("solution").annotate(n=Count("id")).values("n")[:1]
        )
        solutions = solutions.annotate(submitted=Coalesce(Subquery(submitted), 0)).filter(submitted__gte=project.overlap)
    elif filters.status:
        solutions = solutions.filter(_assignments(status=filters.status))
    if filters.annotator:
        solutions = solutions.filter(_assignments(annotator__username=filters.annotator))
    if filters.data_source:
        solutions = solutions.filter(item__data_source=filters.data_source)
    if filters.policy_model:
        solutions = solutions.filter(policy_model=filters.policy_model)
    if filters.humans_disagree:
        solutions = solutions.filter(humans_disagree())
    if filters.machine:
        solutions = solutions.filter(humans_disagree_with(filters.machine))
    if filters.disputed:
        solutions = solutions.filter(disputed())
    if filters.gold == GoldFilter.ANY:
        solutions = solutions.filter(Exists(GoldLabel.objects.filter(step__solution=OuterRef("pk"))))
    elif filters.gold == GoldFilter.NONE:
        solutions = solutions.exclude(Exists(GoldLabel.objects.filter(step__solution=OuterRef("pk"))))
    elif filters.gold == GoldFilter.ADJUDICATED:
        solutions = solutions.filter(_adjudicated())
    if filters.label is not None:
        solutions = solutions.filter(Exists(HumanLabel.objects.filter(step__solution=OuterRef("pk"), value=filters.label)))
    if filters.q:
        in_steps = Exists(Step.objects.filter(solution=OuterRef("pk"), text__icontains=filters.q))
        solutions = solutions.filter(Q(item__question__icontains=filters.q) | Q(in_steps))
    return solutions.order_by("id")


@dataclass(frozen=True)
class ReviewListRow:
    solution_id: int
    item_external_id: str
    data_source: str
    policy_model: str
    steps: int
    annotators: int  # submitted, not counting hidden gold checks
    labels: int  # human labels of its steps
    gold_steps: int
    reasons: list[str]
    adjudicated: bool


def _count(model, **conditions):
    query = model.objects.filter(**conditions).order_by().values(next(iter(conditions))).annotate(n=Count("id")).values("n")[:1]
    return Coalesce(Subquery(query), 0)


def review_list_rows(*, solution_ids: list[int]) -> list[ReviewListRow]:
    """One row per solution (in the order given): its counts and why it is disputed, in one query."""
    if not solution_ids:
        return []
    kinds = list(AutoLabel.Kind.values)
    annotations = {
        "n_steps": _count(Step, solution=OuterRef("pk")),
        "n_annotators": _count(
            Assignment, solution=OuterRef("pk"), status=Assignment.Status.SUBMITTED, is_gold_check=False
        ),
        "n_labels": _count(HumanLabel, step__solution=OuterRef("pk")),
        "n_gold": _count(GoldLabel, step__solution=OuterRef("pk")),
        "disagree": humans_disagree(),
        "adjudicated": _adjudicated(),
        **{f"vs_{kind}": humans_disagree_with(kind) for kind in kinds},
    }
    found = {
        row["id"]: row
        for row in Solution.objects.filter(pk__in=solution_ids)
        .annotate(**annotations)
        .values("id", "item__external_id", "item__data_source", "policy_model", *annotations)
    }
    rows = []
    for solution_id in solution_ids:
        row = found[solution_id]
        reasons = ["annotators disagree"] if row["disagree"] else []
        reasons += [f"humans disagree with {kind.upper()}" for kind in kinds if row[f"vs_{kind}"]]
        rows.append(
            ReviewListRow(
                solution_id=solution_id, item_external_id=row["item__external_id"],
                data_source=row["item__data_source"], policy_model=row["policy_model"], steps=row["n_steps"],
                annotators=row["n_annotators"], labels=row["n_labels"], gold_steps=row["n_gold"],
                reasons=reasons, adjudicated=row["adjudicated"],
            )
        )
    return rows


@dataclass(frozen=True)
class ReviewChoices:
    """What the filters offer: the project's annotators, data sources and policy models."""

    annotators: list[str]
    data_sources: list[str]
    policy_models: list[str]
    machine_kinds: list[tuple[str, str]]
    statuses: list[tuple[str, str]]
    gold: list[tuple[str, str]]


def review_choices(*, project: Project) -> ReviewChoices:
    annotators = (
        Assignment.objects.filter(solution__project=project).order_by().values_list("annotator__username", flat=True).distinct()
    )
    sources = Item.objects.filter(project=project).order_by().values_list("data_source", flat=True).distinct()
    models = Solution.objects.filter(project=project).order_by().values_list("policy_model", flat=True).distinct()
    return ReviewChoices(
        annotators=sorted(annotators),
        data_sources=sorted(s for s in sources if s),
        policy_models=sorted(m for m in models if m),
        machine_kinds=list(AutoLabel.Kind.choices),
        statuses=list(ReviewStatus.choices),
        gold=list(GoldFilter.choices),
    )


@dataclass(frozen=True)
class ReviewNeighbours:
    previous_id: int | None
    next_id: int | None
    position: int | None  # 1-based place of the solution in the filtered list; None: not in it
    total: int
    next_disputed_id: int | None  # the next disputed, not yet adjudicated solution (from the start after the last)


def review_neighbours(*, project: Project, filters: ReviewFilters, solution_id: int) -> ReviewNeighbours:
    """The solutions before and after `solution_id` in the filtered list, and the next disputed one."""
    listed = review_solutions(project=project, filters=filters)
    previous_id = listed.filter(pk__lt=solution_id).order_by("-id").values_list("id", flat=True).first()
    next_id = listed.filter(pk__gt=solution_id).values_list("id", flat=True).first()
    total = listed.count()
    inside = listed.filter(pk=solution_id).exists()
    position = listed.filter(pk__lte=solution_id).count() if inside else None
    return ReviewNeighbours(
        previous_id=previous_id, next_id=next_id, position=position, total=total,
        next_disputed_id=next_disputed_id(project=project, after_id=solution_id),
    )


def next_disputed_id(*, project: Project, after_id: int = 0) -> int | None:
    """The first disputed solution no reviewer has adjudicated after `after_id`, else from the start."""
    open_disputes = Solution.objects.filter(project=project).filter(disputed()).exclude(_adjudicated()).order_by("id")
    found = open_disputes.filter(pk__gt=after_id).values_list("id", flat=True).first()
    if found is None:
        found = open_disputes.exclude(pk=after_id).values_list("id", flat=True).first()
    return found
