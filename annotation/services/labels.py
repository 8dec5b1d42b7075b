"""Writing human and gold labels. Each write touches one (step, annotator) row and keeps a history."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from annotation.models import (
    ERROR_CATEGORY_MAX_LENGTH,
    LABEL_VALUES,
    OTHER_ERROR_CATEGORY,
    GoldLabel,
    HumanLabel,
    LabelChange,
    Step,
)

NOTE_MAX_LENGTH = 2000


class LabelRejected(ValueError):
    def __init__(self, message: str, *, field: str = "value"):
        super().__init__(message)
        self.field = field


def check_label_value(value: int) -> int:
    """The label value as an int; LabelRejected unless it is -1, 0 or 1 (booleans are not labels)."""
    if type(value) is not int or value not in LABEL_VALUES:  # bool and float are not labels
        raise LabelRejected(f"label value {value!r} is not one of -1, 0, 1")
    return int(value)


def check_error_category(*, value, category, note) -> tuple[str, str]:
    """(category, note) as stored; LabelRejected (naming the field) for what no project accepts.

    A category only on an incorrect (-1) label, a note only with "other". Whether the project
    offers the category is the save's check (it reads the project).
    """
    category = "" if category is None else category
    note = "" if note is None else note
    if not isinstance(category, str):
        raise LabelRejected(f"error category {category!r} is not a name", field="error_category")
    if not isinstance(note, str):
        raise LabelRejected("error note must be text", field="error_note")
    category, note = category.strip(), note.strip()
    if category and value != -1:
        raise LabelRejected("an error category goes only with an incorrect (-1) label", field="error_category")
    if len(category) > ERROR_CATEGORY_MAX_LENGTH:
        raise LabelRejected(f"error category is longer than {ERROR_CATEGORY_MAX_LENGTH} characters", field="error_category")
    if note and category != OTHER_ERROR_CATEGORY:
        raise LabelRejected(f'an error note goes only with the category "{OTHER_ERROR_CATEGORY}"', field="error_note")
    if len(note) > NOTE_MAX_LENGTH:
        raise LabelRejected(f"error note is longer than {NOTE_MAX_LENGTH} characters", field="error_note")
    return category, note


@dataclass(frozen=True)
class LabelWrite:
    value: int | None  # None: the label was cleared
    previous: int | None  # None: the annotator had not labelled the step before
    changed: bool  # a history row was written
    error_category: str = ""
    error_note: str = ""


@transaction.atomic
def step_label_set(*, step_id: int, annotator_id: int, value: int, shown_hints: dict | None = None) -> LabelWrite:
    """Set one annotator's label of one step; other annotators' labels of the step are never touched.

    Every change of value is kept in the history (who, when, from, to). `shown_hints` records the
    machine hints the annotator was shown; None leaves those of an existing label as they were.
    Members' clicks go through `assignment_step_label_set` (one statement); this is for the rest.
    """
    value = check_label_value(value)
    # Locked, so racing writes of one label queue up and each sees the value before it.
    label, created = HumanLabel.objects.select_for_update().get_or_create(
        step_id=step_id,
        annotator_id=annotator_id,
        defaults={"value": value, "shown_hints": shown_hints or {}},
    )
    previous = None if created else label.value
    previous_category = "" if created else label.error_category
    if not created and (label.value != value or (shown_hints is not None and label.shown_hints != shown_hints)):
        label.value = value
        if value != -1:  # a category says why a step is incorrect: it goes with the -1
            label.error_category = label.error_note = ""
        if shown_hints is not None:
            label.shown_hints = shown_hints
        label.save(update_fields=["value", "shown_hints", "error_category", "error_note", "updated_at"])
    changed = created or previous != value
    if changed:
        LabelChange.objects.create(
            step_id=step_id,
            changed_by_id=annotator_id,
            annotator_id=annotator_id,
            old_value=previous,
            new_value=value,
            old_category=previous_category,
            new_category=label.error_category,
        )
    return LabelWrite(value=value, previous=previous, changed=changed)


@transaction.atomic
def step_label_clear(*, step_id: int, annotator_id: int) -> LabelWrite:
    """Remove one annotator's label of one step (kept in the history as a change to nothing)."""
    label = HumanLabel.objects.select_for_update().filter(step_id=step_id, annotator_id=annotator_id).first()
    if label is None:
        return LabelWrite(value=None, previous=None, changed=False)
    LabelChange.objects.create(
        step_id=step_id,
        changed_by_id=annotator_id,
        annotator_id=annotator_id,
        old_value=label.value,
        new_value=None,
        old_category=label.error_category,
    )
    label.delete()
    return LabelWrite(value=None, previous=label.value, changed=True)


@transaction.atomic
def gold_label_set(*, step: Step, reviewer, value: int) -> GoldLabel:
    """A reviewer's adjudicated label of `step` (replaces an imported or earlier gold label)."""
    value = check_label_value(value)
    gold = GoldLabel.objects.select_for_update().filter(step=step).first()
    old = gold.value if gold else None
    if gold is None:
        gold = GoldLabel.objects.create(
            step=step,
            value=value,
            source=GoldLabel.Source.ADJUDICATED,
            origin=reviewer.get_username(),
            decided_by=reviewer,
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
