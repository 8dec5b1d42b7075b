"""The training set of a project: one conversation per solution, each step labelled by the merge policy.

Merge (recorded with every run): adjudicated or imported gold > human majority > machine label
(the Monte Carlo value or advantage label, else an imported discrete auto label). A step with no
usable label stays in its conversation and carries no loss. The split is by ITEM: all solutions of
a question go to the same side, so validation never sees a question trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import AutoLabel, GoldLabel, HumanLabel, Item, ItemImage, Project, Solution, Step
from annotation.steps import merge_steps


@dataclass(frozen=True)
class MergePolicy:
    use_gold: bool = True
    use_human: bool = True
    use_machine: bool = True
    mc_label: Literal["value", "advantage"] = "value"
    mc_threshold: float = 0.0  # value label: "+" when mc_i > threshold
    advantage_tolerance: float = 0.0  # advantage label: "=" when |mc_i - mc_{i-1}| <= tolerance
    # A neutral step (human 0, advantage "=") raises no issue, and the PRM answers "+" when it finds none.
    neutral: Literal["positive", "negative", "skip"] = "positive"
    consensus_filter: bool = False  # no loss on steps whose machine label disagrees with the human one
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.mc_label not in ("value", "advantage"):
            raise ValueError(f"mc_label must be 'value' or 'advantage', not {self.mc_label!r}")
        if self.neutral not in ("positive", "negative", "skip"):
            raise ValueError(f"neutral must be 'positive', 'negative' or 'skip', not {self.neutral!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MergePolicy:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown merge policy settings: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class TrainingExample:
    item_id: int
    solution_id: int
    question: str
    steps: list[str]
    labels: list[bool | None]  # per (merged) step: "+", "-" or no loss
    image_files: list[str]  # storage names, in position order
    sources: list[str | None] = field(default_factory=list)  # per step: gold | human | machine | None


@dataclass
class TrainingSet:
    train: list[TrainingExample]
    validation: list[TrainingExample]

    def summary(self) -> dict[str, Any]:
        def count(examples: list[TrainingExample]) -> dict[str, int]:
            labels = [label for example in examples for label in example.labels]
            return {
                "items": len({example.item_id for example in examples}),
                "solutions": len(examples),
                "steps": len(labels),
                "positive": sum(label is True for label in labels),
                "negative": sum(label is False for label in labels),
                "unlabelled": sum(label is None for label in labels),
            }

        return {"train": count(self.train), "validation": count(self.validation)}


def _majority(values: list[int]) -> int | None:
    counts = Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None  # a tie is not a majority
    return counts[0][0]


def machine_labels(
    *, mc_scores: list[float | None], imported: list[int | None], policy: MergePolicy
) -> list[int | None]:
    """Per step of one solution: the MC value or advantage label (+1/0/-1), else the imported one.

    Advantage: sign(mc_i - mc_{i-1}) within the tolerance; the first step, having no predecessor,
    takes its value label; a step whose predecessor has no MC estimate gets none.
    """
    labels: list[int | None] = []
    for index, score in enumerate(mc_scores):
        if score is None:
            labels.append(imported[index])
            continue
        value = 1 if score > policy.mc_threshold else -1
        if policy.mc_label == "value" or index == 0:
            labels.append(value)
            continue
        previous = mc_scores[index - 1]
        if previous is None:
            labels.append(None)
            continue
        difference = score - previous
        labels.append(0 if abs(difference) <= policy.advantage_tolerance else (1 if difference > 0 else -1))
    return labels


def resolve_step_label(
    *, gold: int | None, human: int | None, machine: int | None, policy: MergePolicy
) -> tuple[bool | None, str | None]:
    """The training label of one step (True "+", False "-", None no loss) and where it came from."""
    chosen, source = None, None
    for value, name, enabled in ((gold, "gold", policy.use_gold), (human, "human", policy.use_human)):
        if enabled and value is not None:
            chosen, source = value, name
            break
    if chosen is None and policy.use_machine and machine is not None:
        chosen, source = machine, "machine"
    if chosen is None:
        return None, None
    label = _binary(chosen, policy)
    if label is None:
        return None, None
    if policy.consensus_filter and source in ("gold", "human") and machine is not None:
        machine_label = _binary(machine, policy)
        if machine_label is not None and machine_label != label:
            return None, None
    return label, source


def _binary(value: int, policy: MergePolicy) -> bool | None:
    if value == 0:
        return {"positive": True, "negative": False, "skip": None}[policy.neutral]
    return value > 0


def _merged_labels(labels: list[bool | None], *, max_steps: int) -> list[bool | None]:
    """Labels of the chunks annotation.steps.merge_steps makes: "-" if any step is, "+" if all are."""
    if len(labels) <= max_steps:
        return labels
    size = math.ceil(len(labels) / max_steps)
    merged = []
    for start in range(0, len(labels), size):
        chunk = labels[start : start + size]
        merged.append(False if False in chunk else (True if all(chunk) else None))
    return merged


def training_set_build(*, project: Project, policy: MergePolicy, max_steps_per_solution: int = 12) -> TrainingSet:
    """Every solution of `project` with at least one labelled step, split by item (deterministic by seed)."""
    steps_by_solution: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for step_id, solution_id, text in (
        Step.objects.filter(solution__item__project=project).order_by("solution_id", "index").values_list("id", "solution_id", "text")
    ):
        steps_by_solution[solution_id].append((step_id, text))
    in_project = {"step__solution__item__project": project}
    gold = dict(GoldLabel.objects.filter(**in_project).values_list("step_id", "value"))
    votes: dict[int, list[int]] = defaultdict(list)
    for step_id, value in HumanLabel.objects.filter(**in_project).values_list("step_id", "value"):
        votes[step_id].append(value)
    human = {step_id: _majority(values) for step_id, values in votes.items()}
    mc = dict(
        AutoLabel.objects.filter(kind=AutoLabel.Kind.MC, score__isnull=False, **in_project).values_list("step_id", "score")
    )
    imported = dict(
        AutoLabel.objects.filter(kind=AutoLabel.Kind.IMPORTED, value__isnull=False, **in_project).values_list("step_id", "value")
    )
    images: dict[int, list[str]] = defaultdict(list)
    for item_id, name in ItemImage.objects.filter(item__project=project).order_by("item_id", "position").values_list("item_id", "image__file"):
        images[item_id].append(name)
    questions = dict(Item.objects.filter(project=project).values_list("id", "question"))

    examples: dict[int, list[TrainingExample]] = defaultdict(list)
    for solution_id, item_id in Solution.objects.filter(item__project=project).order_by("id").values_list("id", "item_id"):
        rows = steps_by_solution.get(solution_id)
        if not rows:
            continue
        step_ids = [step_id for step_id, _ in rows]
        machine = machine_labels(
            mc_scores=[mc.get(s) for s in step_ids], imported=[imported.get(s) for s in step_ids], policy=policy
        )
        resolved = [
            resolve_step_label(gold=gold.get(s), human=human.get(s), machine=m, policy=policy)
            for s, m in zip(step_ids, machine, strict=True)
        ]
        labels = [label for label, _ in resolved]
        if all(label is None for label in labels):
            continue
        texts = [text for _, text in rows]
        merged_labels = _merged_labels(labels, max_steps=max_steps_per_solution)
        examples[item_id].append(
            TrainingExample(
                item_id=item_id,
                solution_id=solution_id,
                question=questions[item_id],
                steps=merge_steps(texts, max_steps=max_steps_per_solution),
                labels=merged_labels,
                image_files=images.get(item_id, []),
                sources=[source for _, source in resolved] if len(merged_labels) == len(labels) else [],
            )
        )
    # Rank items by a hash of (seed, item id) rather than shuffling: an item keeps its rank as labels
    # arrive, so the held-out set stays (nearly) the same from one run to the next and a later
    # version is not judged on items an earlier one trained on.
    item_ids = sorted(examples, key=lambda item_id: _split_rank(policy.seed, item_id))
    held_out = set(item_ids[: round(policy.validation_fraction * len(item_ids))])
    train = [e for item_id in sorted(examples) if item_id not in held_out for e in examples[item_id]]
    validation = [e for item_id in sorted(examples) if item_id in held_out for e in examples[item_id]]
    return TrainingSet(train=train, validation=validation)


def _split_rank(seed: int, item_id: int) -> bytes:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).digest()


def example_images(example: TrainingExample) -> list[PILImage.Image]:
    """The example's images, decoded as RGB from the media storage."""
    decoded = []
    for name in example.image_files:
        with default_storage.open(name, "rb") as handle:
            image = PILImage.open(handle)
            decoded.append(image.convert("RGB"))
    return decoded
