"""The training set of a project: one conversation per solution, each step labelled by the merge policy.

The labels come from prm.core.merge (the same resolver the merged export uses): gold > human
majority > machine label (and the LLM judge's, where the policy uses it). A step with no usable label stays in its conversation and carries no
loss. The split is by ITEM (all solutions of a question on one side) and permanent: an item's side
is recorded the first time a build sees it (prm.models.ItemSplit), so as the project grows no item
moves from validation to train and no version is compared on an item another trained on.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from PIL import Image as PILImage

from annotation.models import AutoLabel, GoldLabel, HumanLabel, Item, ItemImage, Project, Solution, Step
from annotation.selectors import judge_values
from annotation.steps import merge_steps
from prm.core.merge import MergePolicy, human_majority, solution_labels, training_label
from prm.models import ItemSplit


@dataclass
class TrainingExample:
    item_id: int
    solution_id: int
    question: str
    steps: list[str]
    labels: list[bool | None]  # per (merged) step: "+", "-" or no loss
    image_files: list[str]  # storage names, in position order
    sources: list[str | None] = field(default_factory=list)  # per step: gold | human | machine | judge | None


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
    """Every solution of `project` with at least one labelled step, split by item (see split_assign)."""
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
    human = {step_id: human_majority(values, only_agreed=policy.only_agreed) for step_id, values in votes.items()}
    mc: dict[int, tuple[float | None, int | None]] = {}  # mc_i, or the value label of an early-stopping run
    for step_id, score, value in (
        AutoLabel.objects.filter(Q(score__isnull=False) | Q(value__isnull=False), kind=AutoLabel.Kind.MC, **in_project)
        .order_by("id")
        .values_list("step_id", "score", "value")
    ):
        mc[step_id] = (score, value)
    imported = dict(
        AutoLabel.objects.filter(kind=AutoLabel.Kind.IMPORTED, value__isnull=False, **in_project).values_list("step_id", "value")
    )
    judge = (
        judge_values(source=policy.judge_source, **in_project)
        if policy.use_judge or policy.mc_judge_consensus else {}
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
        merged = solution_labels(
            gold=[gold.get(s) for s in step_ids], human=[human.get(s) for s in step_ids],
            mc_scores=[mc.get(s, (None, None))[0] for s in step_ids], imported=[imported.get(s) for s in step_ids],
            mc_values=[mc.get(s, (None, None))[1] for s in step_ids], judge=[judge.get(s) for s in step_ids],
            policy=policy,
        )
        labels = [training_label(label.value, policy) for label in merged]
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
                sources=[label.source for label in merged] if len(merged_labels) == len(labels) else [],
            )
        )
    held_out = split_assign(project=project, item_ids=examples, policy=policy)
    train = [e for item_id in sorted(examples) if item_id not in held_out for e in examples[item_id]]
    validation = [e for item_id in sorted(examples) if item_id in held_out for e in examples[item_id]]
    return TrainingSet(train=train, validation=validation)


def split_assign(*, project: Project, item_ids: Iterable[int], policy: MergePolicy) -> set[int]:
    """The held-out items among `item_ids`. Items seen for the first time get their side now, for good:
    the new items ranked lowest by a hash of (seed, item id) are held out until round(fraction * seen)
    of all the items seen so far are. Sides already recorded never change (whatever the seed)."""
    item_ids = set(item_ids)
    with transaction.atomic():
        # Two builds at once would both count the same held-out total: one at a time per project.
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
        known = dict(ItemSplit.objects.filter(project=project).values_list("item_id", "held_out"))
        new = sorted((item_id for item_id in item_ids if item_id not in known), key=lambda i: _split_rank(policy.seed, i))
        if new:
            wanted = round(policy.validation_fraction * (len(known) + len(new))) - sum(known.values())
            take = max(0, min(len(new), wanted))
            ItemSplit.objects.bulk_create(
                [ItemSplit(project=project, item_id=item_id, held_out=rank < take) for rank, item_id in enumerate(new)]
            )
            known.update((item_id, rank < take) for rank, item_id in enumerate(new))
    return {item_id for item_id in item_ids if known[item_id]}


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
