"""Writing human and gold labels. Each write touches one (step, annotator) row and keeps a history."""

from __future__ import annotations

from django.db import transaction

from annotation.models import LABEL_VALUES, GoldLabel, HumanLabel, LabelChange, Step


class LabelRejected(ValueError):
    pass


def _check_value(value: int) -> int:
    if isinstance(value, bool) or value not in LABEL_VALUES:
        raise LabelRejected(f"label value {value!r} is not one of -1, 0, 1")
    return int(value)


@transaction.atomic
def step_label_set(*, step: Step, annotator, value: int, shown_hints: dict | None = None) -> HumanLabel:
    """Set `annotator`'s label of `step`. Other annotators' labels of the step are never touched."""
    value = _check_value(value)
    label, created = HumanLabel.objects.select_for_update().get_or_create(
        step=step, annotator=annotator, defaults={"value": value, "shown_hints": shown_hints or {}}
    )
    old = None if created else label.value
    if not created and (label.value != value or (shown_hints is not None and label.shown_hints != shown_hints)):
        label.value = value
        if shown_hints is not None:
            label.shown_hints = shown_hints
        label.save(update_fields=["value", "shown_hints", "updated_at"])
    if old != value:
        LabelChange.objects.create(step=step, changed_by=annotator, annotator=annotator, old_value=old, new_value=value)
    return label


@transaction.atomic
def step_label_clear(*, step: Step, annotator) -> None:
    label = HumanLabel.objects.select_for_update().filter(step=step, annotator=annotator).first()
    if label is not None:
        LabelChange.objects.create(step=step, changed_by=annotator, annotator=annotator, old_value=label.value, new_value=None)
        label.delete()


@transaction.atomic
def gold_label_set(*, step: Step, reviewer, value: int) -> GoldLabel:
    """A reviewer's adjudicated label of `step` (replaces an imported or earlier gold label)."""
    value = _check_value(value)
    gold = GoldLabel.objects.select_for_update().filter(step=step).first()
    old = gold.value if gold else None
    if gold is None:
        gold = GoldLabel.objects.create(
            step=step, value=value, source=GoldLabel.Source.ADJUDICATED, origin=reviewer.get_username(), decided_by=reviewer
        )
    else:
        gold.value = value
        gold.source = GoldLabel.Source.ADJUDICATED
        gold.origin = reviewer.get_username()
        gold.decided_by = reviewer
        gold.save()
    if old != value:
        LabelChange.objects.create(step=step, changed_by=reviewer, is_gold=True, old_value=old, new_value=value)
    return gold
