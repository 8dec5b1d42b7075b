"""Writing human and gold labels. Each write touches one (step, annotator) row and keeps a history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from django.db import connection, transaction

from annotation.models import LABEL_VALUES, GoldLabel, HumanLabel, LabelChange, Step


class LabelRejected(ValueError):
    pass


def check_label_value(value: int) -> int:
    """The label value as an int; LabelRejected unless it is -1, 0 or 1 (booleans are not labels)."""
    if type(value) is not int or value not in LABEL_VALUES:  # bool and float are not labels
        raise LabelRejected(f"label value {value!r} is not one of -1, 0, 1")
    return int(value)


@dataclass(frozen=True)
class LabelWrite:
    value: int
    previous: int | None  # None: the annotator had not labelled the step before
    changed: bool  # a history row was written


def step_label_set(*, step_id: int, annotator_id: int, value: int, shown_hints: dict | None = None) -> LabelWrite:
    """Set one annotator's label of one step; other annotators' labels of the step are never touched.

    Every change of value is kept in the history (who, when, from, to). `shown_hints` records the
    machine hints the annotator was shown; None leaves those of an existing label as they were.
    """
    value = check_label_value(value)
    if connection.vendor == "postgresql":
        for _attempt in range(3):
            write = _label_upsert_postgresql(
                step_id=step_id, annotator_id=annotator_id, value=value, shown_hints=shown_hints
            )
            if write is not None:
                return write
        raise RuntimeError(f"could not write the label of step {step_id}: the row kept changing under the write")
    return _label_upsert_orm(step_id=step_id, annotator_id=annotator_id, value=value, shown_hints=shown_hints)


@transaction.atomic
def _label_upsert_orm(*, step_id: int, annotator_id: int, value: int, shown_hints: dict | None) -> LabelWrite:
    """Any database: lock the row, then insert or update it and write the history."""
    label, created = HumanLabel.objects.select_for_update().get_or_create(
        step_id=step_id,
        annotator_id=annotator_id,
        defaults={"value": value, "shown_hints": shown_hints or {}},
    )
    previous = None if created else label.value
    if not created and (label.value != value or (shown_hints is not None and label.shown_hints != shown_hints)):
        label.value = value
        if shown_hints is not None:
            label.shown_hints = shown_hints
        label.save(update_fields=["value", "shown_hints", "updated_at"])
    changed = created or previous != value
    if changed:
        LabelChange.objects.create(
            step_id=step_id,
            changed_by_id=annotator_id,
            annotator_id=annotator_id,
            old_value=previous,
            new_value=value,
        )
    return LabelWrite(value=value, previous=previous, changed=changed)


@cache
def _upsert_sql() -> str:
    label, change = HumanLabel._meta.db_table, LabelChange._meta.db_table
    # One statement, so one round trip and atomic without BEGIN/COMMIT: `old` locks the current
    # row (FOR UPDATE reads the latest committed version), then either the insert or the update
    # runs, and the history row takes its old value from the locked row.
    return f"""
        WITH old AS (
            SELECT id, value, shown_hints FROM {label}
            WHERE step_id = %(step)s AND annotator_id = %(user)s FOR UPDATE
        ), inserted AS (
            INSERT INTO {label} (step_id, annotator_id, value, shown_hints, created_at, updated_at)
            SELECT %(step)s, %(user)s, %(value)s, COALESCE(%(hints)s::jsonb, '{{}}'::jsonb), now(), now()
            WHERE NOT EXISTS (SELECT 1 FROM old)
            ON CONFLICT (step_id, annotator_id) DO NOTHING
            RETURNING id
        ), updated AS (
            UPDATE {label} AS label
            SET value = %(value)s, shown_hints = COALESCE(%(hints)s::jsonb, old.shown_hints), updated_at = now()
            FROM old
            WHERE label.id = old.id AND (
                old.value <> %(value)s OR (%(hints)s::jsonb IS NOT NULL AND old.shown_hints <> %(hints)s::jsonb)
            )
            RETURNING label.id
        ), history AS (
            INSERT INTO {change} (step_id, changed_by_id, annotator_id, is_gold, old_value, new_value, changed_at)
            SELECT %(step)s, %(user)s, %(user)s, false, (SELECT value FROM old), %(value)s, now()
            WHERE EXISTS (SELECT 1 FROM inserted) OR EXISTS (SELECT 1 FROM old WHERE value <> %(value)s)
            RETURNING id
        )
        SELECT EXISTS (SELECT 1 FROM old), (SELECT value FROM old), EXISTS (SELECT 1 FROM inserted),
               EXISTS (SELECT 1 FROM history), (SELECT count(*) FROM updated)
    """


def _label_upsert_postgresql(
    *, step_id: int, annotator_id: int, value: int, shown_hints: dict | None
) -> LabelWrite | None:
    """None when another request inserted the same row between our read and our insert: try again."""
    params = {
        "step": step_id,
        "user": annotator_id,
        "value": value,
        "hints": None if shown_hints is None else json.dumps(shown_hints),
    }
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(), params)
        existed, previous, inserted, changed, _updated = cursor.fetchone()
    if not existed and not inserted:
        return None
    return LabelWrite(value=value, previous=previous, changed=bool(changed))


@transaction.atomic
def step_label_clear(*, step_id: int, annotator_id: int) -> None:
    """Remove one annotator's label of one step (kept in the history as a change to nothing)."""
    label = HumanLabel.objects.select_for_update().filter(step_id=step_id, annotator_id=annotator_id).first()
    if label is not None:
        LabelChange.objects.create(
            step_id=step_id,
            changed_by_id=annotator_id,
            annotator_id=annotator_id,
            old_value=label.value,
            new_value=None,
        )
        label.delete()


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
