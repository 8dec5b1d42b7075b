"""The one merge resolver: which label each step of a solution carries, for export, training and evaluation.

Order (DESIGN.md "Merge"): adjudicated or imported gold > human majority > machine label, where the
machine label is the Monte Carlo value or advantage label, else an imported discrete label. An LLM
judge's verdict is a source of its own (`use_judge`), after the machine label or, with
`judge_first`, before it; `mc_judge_consensus` keeps a machine-sourced step only where the MC (or
imported) label and the judge agree, as multimodal PRM datasets filter MC labels with a judge. A merged
label is three-valued (+1 correct, 0 neutral, -1 incorrect) or None (no usable label, or dropped by
the policy); `training_label` maps it to the PRM's "+" / "-" / no loss. Pure: no Django.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class MergePolicy:
    """How step labels are merged; recorded with every training run (to_dict / from_dict)."""

    use_gold: bool = True
    use_human: bool = True
    use_machine: bool = True
    only_agreed: bool = False  # human label only where every annotator of the step agrees
    mc_label: Literal["value", "advantage"] = "value"
    mc_threshold: float = 0.0  # value label: "+" when mc_i > threshold
    advantage_tolerance: float = 0.0  # advantage label: "=" when |mc_i - mc_{i-1}| <= tolerance
    # A neutral step (human 0, advantage "=") raises no issue, and the PRM answers "+" when it finds none.
    neutral: Literal["positive", "negative", "skip"] = "positive"
    consensus_filter: bool = False  # no label on steps whose machine label disagrees with the human one
    use_judge: bool = False  # the LLM judge's verdict as a source (where no gold, human or earlier source)
    judge_first: bool = False  # the judge before the MC / imported machine label (else after it)
    judge_source: str = ""  # which judge model's labels ("" = each step's newest judge label)
    # A step labelled by a machine (MC / imported / judge) keeps its label only when the machine label
    # and the judge's both exist and agree; gold and human labels are kept as they are.
    mc_judge_consensus: bool = False
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.mc_label not in ("value", "advantage"):
            raise ValueError(f"mc_label must be 'value' or 'advantage', not {self.mc_label!r}")
        if self.neutral not in ("positive", "negative", "skip"):
            raise ValueError(f"neutral must be 'positive', 'negative' or 'skip', not {self.neutral!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        if self.advantage_tolerance < 0:
            raise ValueError("advantage_tolerance must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MergePolicy:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown merge policy settings: {', '.join(unknown)}")
        return cls(**data)


# Where a merged label came from.
Source = Literal["gold", "human", "machine", "judge"]


@dataclass(frozen=True)
class MergedLabel:
    value: int | None  # +1 / 0 / -1, or None: no usable label
    source: Source | None


NO_LABEL = MergedLabel(None, None)


def human_majority(values: Sequence[int], *, only_agreed: bool = False) -> int | None:
    """The annotators' label of one step: the most frequent value; a tie is not a majority.

    With `only_agreed`, a label only when every annotator gave the same value.
    """
    counts = Counter(values).most_common()
    if not counts:
        return None
    if only_agreed:
        return counts[0][0] if len(counts) == 1 else None
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def mc_value_label(score: float | None, *, threshold: float, value: int | None = None) -> int | None:
    """The Monte Carlo value label: +1 when mc_i > threshold, else -1; None without an estimate.

    A run that stops sampling early (adaptive, first-error search) has no mc_i, only the value
    label it stored: +1 when some completion reached the answer, which is mc_i > 0. It stands
    for VisualPRM's threshold 0 only; under another threshold such a step has no label.
    """
    if score is not None:
        return 1 if score > threshold else -1
    if value is not None and threshold == 0:
        return value
    return None


def machine_labels(
    *,
    mc_scores: Sequence[float | None],
    imported: Sequence[int | None],
    policy: MergePolicy,
    mc_values: Sequence[int | None] | None = None,
) -> list[int | None]:
    """Per step of one solution: the MC value or advantage label (+1/0/-1), else the imported one.

    `mc_values` are the value labels stored by runs without mc_i (see mc_value_label).
    Advantage: sign(mc_i - mc_{i-1}) within the tolerance; the first step, having no predecessor,
    takes its value label; a step whose predecessor has no mc_i gets none, and so does a step
    without one.
    """
    values = mc_values if mc_values is not None else [None] * len(mc_scores)
    labels: list[int | None] = []
    for index, score in enumerate(mc_scores):
        if score is None:
            early = mc_value_label(None, threshold=policy.mc_threshold, value=values[index])
            if early is not None and (policy.mc_label == "value" or index == 0):
                labels.append(early)
            elif early is not None:
                labels.append(None)
            else:
                labels.append(imported[index])
            continue
        if policy.mc_label == "value" or index == 0:
            labels.append(mc_value_label(score, threshold=policy.mc_threshold))
            continue
        previous = mc_scores[index - 1]
        if previous is None:
            labels.append(None)
            continue
        difference = score - previous
        labels.append(0 if abs(difference) <= policy.advantage_tolerance else (1 if difference > 0 else -1))
    return labels


def training_label(value: int | None, policy: MergePolicy) -> bool | None:
    """The PRM's target for a merged label: True "+", False "-", None no loss (neutral per the policy)."""
    if value is None:
        return None
    if value == 0:
        return {"positive": True, "negative": False, "skip": None}[policy.neutral]
    return value > 0


def merged_label(
    *, gold: int | None, human: int | None, machine: int | None, policy: MergePolicy, judge: int | None = None
) -> MergedLabel:
    """One step's label: gold > human majority > machine and judge (in the policy's order), then the
    neutral "skip", the consensus filter and the MC-judge consensus filter."""
    machines = [(machine, "machine", policy.use_machine), (judge, "judge", policy.use_judge)]
    if policy.judge_first:
        machines.reverse()
    chosen = NO_LABEL
    for value, source, enabled in ((gold, "gold", policy.use_gold), (human, "human", policy.use_human), *machines):
        if enabled and value is not None:
            chosen = MergedLabel(value, source)
            break
    target = training_label(chosen.value, policy)
    if target is None:
        return NO_LABEL
    if policy.consensus_filter and chosen.source in ("gold", "human") and machine is not None:
        machine_target = training_label(machine, policy)
        if machine_target is not None and machine_target != target:
            return NO_LABEL
    if policy.mc_judge_consensus and chosen.source in ("machine", "judge"):
        if machine is None or judge is None or training_label(machine, policy) != training_label(judge, policy):
            return NO_LABEL
    return chosen


def solution_labels(
    *,
    gold: Sequence[int | None],
    human: Sequence[int | None],
    mc_scores: Sequence[float | None],
    imported: Sequence[int | None],
    policy: MergePolicy,
    mc_values: Sequence[int | None] | None = None,
    judge: Sequence[int | None] | None = None,
) -> list[MergedLabel]:
    """The merged label of every step of one solution (per-step inputs in step order)."""
    machine = machine_labels(mc_scores=mc_scores, imported=imported, policy=policy, mc_values=mc_values)
    judged = list(judge) if judge is not None else [None] * len(machine)
    return [
        merged_label(gold=g, human=h, machine=m, judge=j, policy=policy)
        for g, h, m, j in zip(gold, human, machine, judged, strict=True)
    ]


def resolve_step_label(
    *, gold: int | None, human: int | None, machine: int | None, policy: MergePolicy, judge: int | None = None
) -> tuple[bool | None, str | None]:
    """The training label of one step (True "+", False "-", None no loss) and where it came from."""
    label = merged_label(gold=gold, human=human, machine=machine, judge=judge, policy=policy)
    return training_label(label.value, policy), label.source
