"""Numbers for a project's dashboard: progress, pace, agreement among humans and with machines.

Everything comes from seven queries (eight once an LLM judge labelled steps) whatever the project's
size (labels are read once and grouped here), so the page never issues a query per step or per
annotator.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from annotation.agreement import (
    PairAgreement,
    binary_label,
    cohen_kappa,
    krippendorff_alpha_nominal,
    pairwise_agreement,
    percent_agreement,
)
from annotation.models import Assignment, AutoLabel, GoldLabel, HumanLabel, Project, Solution
from annotation.review import MC_THRESHOLD, PRM_THRESHOLD

# The line chart of labels per day shows at most this many most recent days.
MAX_DAYS = 60


@dataclass(frozen=True)
class AnnotatorPace:
    annotator: str
    labels: int  # labels on solutions the annotator submitted
    seconds: int  # time spent on those submitted assignments

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def steps_per_hour(self) -> float | None:
        return self.labels * 3600 / self.seconds if self.seconds else None


@dataclass(frozen=True)
class ReferenceAgreement:
    """Human labels compared with one reference (MC, PRM or gold), over all annotators or one."""

    reference: str
    annotator: str | None
    pairs: int
    percent: float | None
    kappa: float | None


@dataclass
class Dashboard:
    overlap: int
    solutions_total: int
    solutions_complete: int  # `overlap` submitted assignments (hidden gold checks not counted)
    solutions_started: int  # at least one, fewer than `overlap`
    steps_total: int
    steps_labelled: int
    steps_multi: int  # labelled by two or more annotators: the units of alpha
    steps_full: int  # labelled by `overlap` or more annotators
    annotators: list[str]
    pace: list[AnnotatorPace]
    days: list[date]
    labels_per_day: dict[str, list[int]]
    alpha: float | None
    kappa: dict[tuple[str, str], PairAgreement]
    machine: list[ReferenceAgreement]
    machine_by_annotator: dict[str, list[ReferenceAgreement]]
    # The LLM judge against the other machine labels, over every step both labelled (no human needed).
    judge_vs_machines: list[ReferenceAgreement] = field(default_factory=list)
    distribution: dict[str, Counter] = field(default_factory=dict)  # data source -> {1: n, 0: n, -1: n}
    # (category, incorrect labels carrying it), the project's list in order, then any no longer in
    # it, then "(none given)"; empty where the project uses no error categories and none are stored.
    error_categories: list[tuple[str, int]] = field(default_factory=list)

    @property
    def error_categories_max(self) -> int:
        return max((n for _, n in self.error_categories), default=0)

    @property
    def solutions_not_started(self) -> int:
        return self.solutions_total - self.solutions_complete - self.solutions_started

    @property
    def steps_partial(self) -> int:
        return self.steps_labelled - self.steps_full

    @property
    def steps_unlabelled(self) -> int:
        return self.steps_total - self.steps_labelled


REFERENCES = ("MC", "PRM", "Judge", "Gold")


def project_dashboard(*, project: Project) -> Dashboard:
    totals = Solution.objects.filter(item__project=project).aggregate(
        solutions=Count("id", distinct=True), steps=Count("steps")
    )
    submitted = list(
        Assignment.objects.filter(solution__item__project=project, status=Assignment.Status.SUBMITTED).values_list(
            "annotator__username", "solution_id", "seconds_spent", "is_gold_check"
        )
    )
    labels = list(
        HumanLabel.objects.filter(step__solution__item__project=project).values_list(
            "step_id", "step__solution_id", "step__solution__item__data_source", "annotator__username", "value",
            "created_at",
        )
    )
    labelled_step = Exists(HumanLabel.objects.filter(step=OuterRef("step")))
    machine_scores: dict[str, dict[int, float]] = {AutoLabel.Kind.MC: {}, AutoLabel.Kind.PRM: {}}
    # Ordered by id so that, where several sources scored a step, the newest one is used.
    for step_id, kind, score in (
        AutoLabel.objects.filter(
            labelled_step, step__solution__item__project=project, kind__in=list(machine_scores), score__isnull=False
        )
        .order_by("id")
        .values_list("step_id", "kind", "score")
    ):
        machine_scores[kind][step_id] = score
    gold = dict(
        GoldLabel.objects.filter(labelled_step, step__solution__item__project=project).values_list("step_id", "value")
    )
    # Judge verdicts of every step (the judge is compared with MC and PRM on unlabelled steps too).
    judge = dict(
        AutoLabel.objects.filter(step__solution__item__project=project, kind=AutoLabel.Kind.JUDGE)
        .order_by("id")
        .values_list("step_id", "value")
    )

    # Progress.
    per_solution = Counter(solution_id for _, solution_id, _, is_gold in submitted if not is_gold)
    complete = sum(1 for n in per_solution.values() if n >= project.overlap)

    # Steps as units of agreement: step -> {annotator: value}.
    units: dict[int, dict[str, int]] = defaultdict(dict)
    distribution: dict[str, Counter] = defaultdict(Counter)
    for step_id, _, data_source, username, value, _ in labels:
        units[step_id][username] = value
        distribution[data_source or "(none)"][value] += 1
    annotators = sorted({username for _, _, _, username, _, _ in labels} | {row[0] for row in submitted})

    days, per_day = _labels_per_day(labels, annotators)
    multi = {step_id: by_annotator for step_id, by_annotator in units.items() if len(by_annotator) >= 2}
    machine, by_annotator = _machine_agreement(units, machine_scores, gold, judge, annotators)
    return Dashboard(
        overlap=project.overlap,
        solutions_total=totals["solutions"],
        solutions_complete=complete,
        solutions_started=len(per_solution) - complete,
        steps_total=totals["steps"],
        steps_labelled=len(units),
        steps_multi=len(multi),
        steps_full=sum(1 for by_annotator in units.values() if len(by_annotator) >= project.overlap),
        annotators=annotators,
        pace=_pace(submitted, labels, annotators),
        days=days,
        labels_per_day=per_day,
        alpha=krippendorff_alpha_nominal(multi),
        kappa=pairwise_agreement(multi),
        machine=machine,
        machine_by_annotator=by_annotator,
        judge_vs_machines=_judge_vs_machines(project, judge),
        distribution=dict(sorted(distribution.items())),
        error_categories=_error_category_counts(project),
    )


NO_CATEGORY = "(none given)"


def _error_category_counts(project: Project) -> list[tuple[str, int]]:
    """Incorrect human labels per error category (one query)."""
    counts = dict(
        HumanLabel.objects.filter(step__solution__project=project, value=-1)
        .values_list("error_category")
        .annotate(n=Count("id"))
        .values_list("error_category", "n")
    )
    named = {name: n for name, n in counts.items() if name}
    if not project.error_categories_enabled and not named:
        return []
    listed = list(project.error_categories or [])
    rows = [(name, named.pop(name, 0)) for name in listed]
    rows += sorted(named.items())
    rows.append((NO_CATEGORY, counts.get("", 0)))
    return rows


def _pace(submitted, labels, annotators: list[str]) -> list[AnnotatorPace]:
    seconds: Counter[str] = Counter()
    done: set[tuple[str, int]] = set()
    for username, solution_id, seconds_spent, _ in submitted:
        seconds[username] += seconds_spent
        done.add((username, solution_id))
    counts = Counter(username for _, solution_id, _, username, _, _ in labels if (username, solution_id) in done)
    return [AnnotatorPace(annotator=name, labels=counts[name], seconds=seconds[name]) for name in annotators]


def _labels_per_day(labels, annotators: list[str]) -> tuple[list[date], dict[str, list[int]]]:
    counts: Counter[tuple[str, date]] = Counter(
        (username, timezone.localtime(created_at).date()) for *_, username, _, created_at in labels
    )
    if not counts:
        return [], {}
    first = min(day for _, day in counts)
    last = max(day for _, day in counts)
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return days, {name: [counts[name, day] for day in days] for name in annotators}


def _judge_vs_machines(project: Project, judge: dict[int, int]) -> list[ReferenceAgreement]:
    """The judge's +1/-1 verdicts against MC and PRM labels of the same steps (its neutral ones left out)."""
    if not judge:
        return []
    scores: dict[str, dict[int, float]] = {AutoLabel.Kind.MC: {}, AutoLabel.Kind.PRM: {}}
    for step_id, kind, score in (
        AutoLabel.objects.filter(step__solution__item__project=project, kind__in=list(scores), score__isnull=False)
        .order_by("id")
        .values_list("step_id", "kind", "score")
    ):
        scores[kind][step_id] = score
    rows = []
    for name, kind, threshold in (("MC", AutoLabel.Kind.MC, MC_THRESHOLD), ("PRM", AutoLabel.Kind.PRM, PRM_THRESHOLD)):
        pairs = [
            (value, binary_label(scores[kind][step_id], threshold=threshold))
            for step_id, value in judge.items()
            if value != 0 and step_id in scores[kind]
        ]
        rows.append(ReferenceAgreement(
            reference=name, annotator="Judge", pairs=len(pairs), percent=percent_agreement(pairs), kappa=cohen_kappa(pairs)
        ))
    return rows


def _machine_agreement(units, machine_scores, gold, judge, annotators):
    """Percent agreement and kappa of human labels with MC, PRM, judge and gold labels of the same steps.

    MC and PRM have no neutral, so neutral human labels are left out of those comparisons; the
    judge and gold have one, so every human label is compared with them.
    """
    references = {
        "MC": {s: binary_label(v, threshold=MC_THRESHOLD) for s, v in machine_scores[AutoLabel.Kind.MC].items()},
        "PRM": {s: binary_label(v, threshold=PRM_THRESHOLD) for s, v in machine_scores[AutoLabel.Kind.PRM].items()},
        "Judge": judge,
        "Gold": gold,
    }
    pairs: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for step_id, by_annotator in units.items():
        for reference, values in references.items():
            if step_id not in values:
                continue
            for username, value in by_annotator.items():
                if value == 0 and reference in ("MC", "PRM"):
                    continue
                pairs[reference, username].append((value, values[step_id]))

    def summary(reference: str, annotator: str | None, rows: list[tuple[int, int]]) -> ReferenceAgreement:
        return ReferenceAgreement(
            reference=reference, annotator=annotator, pairs=len(rows),
            percent=percent_agreement(rows), kappa=cohen_kappa(rows),
        )

    overall = [
        summary(reference, None, [p for name in annotators for p in pairs[reference, name]]) for reference in REFERENCES
    ]
    by_annotator = {
        name: [summary(reference, name, pairs[reference, name]) for reference in REFERENCES] for name in annotators
    }
    return overall, by_annotator
