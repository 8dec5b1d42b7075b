"""A member labels one step of their own assignment: the click annotators make all day.

On PostgreSQL the whole save is one statement, so one round trip: it checks that the user may
label the step (member of the project, or staff; their own assignment, still open; the step in
its solution), reads the machine hints they are shown, locks their label row, inserts or updates
it and writes the history row. Nothing is written unless every check passes. Other databases
(SQLite for ./run.sh) take the same steps with two calls: `label_target`, then `step_label_set`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from django.db import connection
from django.http import Http404

from annotation.access import OVERSEER_ROLES
from annotation.label_targets import LabelTarget, label_target
from annotation.models import (
    Assignment,
    AutoLabel,
    HumanLabel,
    LabelChange,
    Membership,
    Project,
    Solution,
    Step,
)
from annotation.services.labels import LabelRejected, LabelWrite, check_label_value, step_label_set


class AssignmentClosed(Exception):
    """The assignment is submitted, skipped or flagged: its labels no longer change."""

    def __init__(self, status: str):
        super().__init__(f"this item is already {Assignment.Status(status).label.lower()}")
        self.status = status


@dataclass(frozen=True)
class LabelSave:
    target: LabelTarget  # the step as the save read it (index, text, the hints shown)
    write: LabelWrite


def assignment_step_label_set(*, user, project_id: int, assignment_id: int, step_id: int, value: int) -> LabelSave:
    """Set `user`'s label of a step of their own open assignment.

    Http404 for outsiders and for anything that is not theirs; AssignmentClosed when the
    assignment is finished; LabelRejected for a value other than -1, 0, 1. Other annotators'
    labels are never touched, and each change is kept in the history with the hints shown.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such project.")
    try:
        value = check_label_value(value)
    except LabelRejected:
        # Outsiders learn nothing from a bad value: the access checks come first, as for a good one.
        _open_target(user=user, project_id=project_id, assignment_id=assignment_id, step_id=step_id)
        raise
    save = _save_postgresql if connection.vendor == "postgresql" else _save_portable
    return save(user=user, project_id=project_id, assignment_id=assignment_id, step_id=step_id, value=value)


def _save_portable(*, user, project_id: int, assignment_id: int, step_id: int, value: int) -> LabelSave:
    """Any database: the access query, then the write (two round trips)."""
    target = _open_target(user=user, project_id=project_id, assignment_id=assignment_id, step_id=step_id)
    write = step_label_set(step_id=step_id, annotator_id=user.pk, value=value, shown_hints=target.hints)
    return LabelSave(target=target, write=write)


def _save_postgresql(*, user, project_id: int, assignment_id: int, step_id: int, value: int) -> LabelSave:
    """PostgreSQL: checks, hints and write in one statement (one round trip)."""
    params = {
        "step": step_id,
        "assignment": assignment_id,
        "user": user.pk,
        "project": project_id,
        "staff": bool(user.is_staff),
        "overseer": list(OVERSEER_ROLES),
        "open": Assignment.Status.ASSIGNED,
        "mc": AutoLabel.Kind.MC,
        "prm": AutoLabel.Kind.PRM,
        "value": value,
    }
    for _attempt in range(3):
        with connection.cursor() as cursor:
            cursor.execute(_save_sql(), params)
            row = cursor.fetchone()
        if row is None:
            raise Http404("No such step in your assignments.")
        status, solution_id, index, text, is_member, sees_hints, hints, existed, previous, inserted, changed = row
        if not is_member:
            raise Http404("No such project.")
        if status != Assignment.Status.ASSIGNED:
            raise AssignmentClosed(status)
        if existed or inserted:
            target = LabelTarget(
                project_id=project_id,
                assignment_id=assignment_id,
                assignment_status=status,
                solution_id=solution_id,
                step_id=step_id,
                step_index=index,
                step_text=text,
                sees_hints=sees_hints,
                hints=json.loads(hints) if isinstance(hints, str) else hints,
            )
            return LabelSave(target=target, write=LabelWrite(value=value, previous=previous, changed=changed))
        # Another request inserted the same (step, annotator) row between our look and our
        # insert (ON CONFLICT DO NOTHING): run again, and it is an update.
    raise RuntimeError(f"could not write the label of step {step_id}: the row kept changing under the write")


def _open_target(*, user, project_id: int, assignment_id: int, step_id: int) -> LabelTarget:
    target = label_target(user=user, project_id=project_id, assignment_id=assignment_id, step_id=step_id)
    if not target.is_open:
        raise AssignmentClosed(target.assignment_status)
    return target


@cache
def _save_sql() -> str:
    step, assignment, solution = Step._meta.db_table, Assignment._meta.db_table, Solution._meta.db_table
    project, membership = Project._meta.db_table, Membership._meta.db_table
    auto, label, change = AutoLabel._meta.db_table, HumanLabel._meta.db_table, LabelChange._meta.db_table
    # `target` is the access check; `allowed` is empty unless it passed, and every write below
    # depends on `allowed`. The hints object matches labelling_reads.hints_entry: the latest machine
    # label of each kind (jsonb keeps the last of duplicate keys, aggregated in id order).
    return f"""
        WITH target AS (
            SELECT a.status, so.id AS solution_id, st."index", st.text,
                   (m.role IS NOT NULL OR %(staff)s) AS is_member,
                   (p.show_machine_labels OR %(staff)s OR m.role = ANY(%(overseer)s)) AS sees_hints
            FROM {step} st
            JOIN {assignment} a ON a.solution_id = st.solution_id
            JOIN {solution} so ON so.id = st.solution_id
            JOIN {project} p ON p.id = so.project_id
            LEFT JOIN {membership} m ON m.project_id = p.id AND m.user_id = %(user)s
            WHERE st.id = %(step)s AND a.id = %(assignment)s AND a.annotator_id = %(user)s AND p.id = %(project)s
        ), allowed AS (
            SELECT sees_hints FROM target WHERE is_member AND status = %(open)s
        ), hints AS (
            SELECT COALESCE(
                jsonb_object_agg(
                    al.kind,
                    CASE WHEN al.kind = %(mc)s
                        THEN jsonb_build_object(
                            'score', al.score, 'right', al.num_correct, 'total', al.num_total, 'source', al.source
                        )
                        ELSE jsonb_build_object('score', al.score, 'source', al.source)
                    END
                    ORDER BY al.id
                ),
                '{{}}'::jsonb
            ) AS shown
            FROM {auto} al
            WHERE al.step_id = %(step)s AND al.kind IN (%(mc)s, %(prm)s)
              AND EXISTS (SELECT 1 FROM allowed WHERE sees_hints)
        ), old AS (
            SELECT id, value, shown_hints FROM {label}
            WHERE step_id = %(step)s AND annotator_id = %(user)s AND EXISTS (SELECT 1 FROM allowed)
            FOR UPDATE
        ), inserted AS (
            INSERT INTO {label} (step_id, annotator_id, value, shown_hints, created_at, updated_at)
            SELECT %(step)s, %(user)s, %(value)s, (SELECT shown FROM hints), now(), now()
            WHERE EXISTS (SELECT 1 FROM allowed) AND NOT EXISTS (SELECT 1 FROM old)
            ON CONFLICT (step_id, annotator_id) DO NOTHING
            RETURNING id
        ), updated AS (
            UPDATE {label} AS label
            SET value = %(value)s, shown_hints = (SELECT shown FROM hints), updated_at = now()
            FROM old
            WHERE label.id = old.id
              AND (old.value <> %(value)s OR old.shown_hints <> (SELECT shown FROM hints))
            RETURNING label.id
        ), history AS (
            INSERT INTO {change} (step_id, changed_by_id, annotator_id, is_gold, old_value, new_value, changed_at)
            SELECT %(step)s, %(user)s, %(user)s, false, (SELECT value FROM old), %(value)s, now()
            WHERE EXISTS (SELECT 1 FROM inserted) OR EXISTS (SELECT 1 FROM old WHERE value <> %(value)s)
            RETURNING id
        )
        SELECT target.status, target.solution_id, target."index", target.text, target.is_member,
               target.sees_hints, (SELECT shown FROM hints),
               EXISTS (SELECT 1 FROM old), (SELECT value FROM old), EXISTS (SELECT 1 FROM inserted),
               EXISTS (SELECT 1 FROM history)
        FROM target
    """
