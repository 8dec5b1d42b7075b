"""The requests annotators make all day, each one PostgreSQL statement (one round trip).

- `label_save_statement`: check access, read the machine hints shown, lock the label row,
  insert or update it, write the history row, and say which required steps still lack a label.
- `next_item_statement`: the annotator's oldest open assignment in the project, else take a
  slot on the first open solution in queue order that nobody is taking right now.
- `submit_statement`: check access, find the required steps still missing a label, and finish
  the assignment with a conditional UPDATE only if it is still open and nothing is missing.
- `labelling_screen_statement`: what the labelling screen shows of a solution (images, steps,
  the annotator's labels, hints, the steps still required), for the page and the API alike.
- `project_member_statement`: a project with the user's role in it, the access check of every
  other page and API request.

They share fragments: the access check (`_ACCESS`: a member of the project or staff; their own
assignment; the project from the solution's own copy of it), the machine-hints JSON (`_HINTS`)
and the required-steps rule (`_LABELS`, `_MISSING_IDS`), which the labelling screen also runs for
the pages and the API, so the page, the API, the save and submit apply one rule. Building the
same queries through the ORM costs more Python per request than the database spends answering
(benchmarks/annotation_load.py: next item cost 2.5 ms of Python per request with one statement,
8 ms with the ORM's five queries); everything else reads and writes through the ORM.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from django.db import connection, transaction

from annotation.models import (
    OVERSEER_ROLES,
    Assignment,
    AutoLabel,
    HumanLabel,
    Image,
    Item,
    ItemImage,
    LabelChange,
    LabelMode,
    Membership,
    Project,
    Solution,
    Step,
)
from stepmark import rows


@cache
def _tables() -> dict[str, str]:
    models = {
        "assignment": Assignment, "solution": Solution, "project": Project, "membership": Membership,
        "step": Step, "label": HumanLabel, "change": LabelChange, "auto": AutoLabel, "item": Item,
        "item_image": ItemImage, "image": Image,
    }
    return {name: model._meta.db_table for name, model in models.items()}


# The access check: `user`'s own assignment, in `project` (the solution's own copy of its project,
# never through the item), the user a member or staff. Aliases a, s, p, m; %(staff)s is is_staff.
_ACCESS = """
    FROM {assignment} a
    JOIN {solution} s ON s.id = a.solution_id
    JOIN {project} p ON p.id = s.project_id
    LEFT JOIN {membership} m ON m.project_id = p.id AND m.user_id = %(user)s
    {join}
    WHERE a.id = %(assignment)s AND a.annotator_id = %(user)s AND p.id = %(project)s
      AND (m.role IS NOT NULL OR %(staff)s)
"""

# The hints of step {step_ref} as annotators are shown them (the one place their shape is written):
# the latest machine label of each kind (jsonb keeps the last of duplicate keys, aggregated in id order).
_HINTS = """
    SELECT COALESCE(
        jsonb_object_agg(
            al.kind,
            CASE WHEN al.kind = %(mc)s
                THEN jsonb_build_object('score', al.score, 'right', al.num_correct, 'total', al.num_total, 'source', al.source)
                WHEN al.kind = %(judge)s
                THEN jsonb_build_object('value', al.value, 'reason', al.reason, 'source', al.source)
                ELSE jsonb_build_object('score', al.score, 'source', al.source)
            END
            ORDER BY al.id
        ),
        '{{}}'::jsonb
    ) AS shown
    FROM {auto} al
    WHERE al.step_id = {step_ref} AND al.kind IN (%(mc)s, %(prm)s, %(judge)s)
"""

# The required-steps rule, once: `labels` is every step of the target's solution with the
# annotator's value (`{value}`: what the statement sees as the value); `missing` the required
# steps without one: all steps, or in first-error projects those before the first incorrect one
# (that one included). Needs a `target` CTE with solution_id and label_mode.
_LABELS = """
    labels AS (
        SELECT st.id AS step_id, st."index", {value} AS value,
               COALESCE(hl.error_category, '') AS error_category, COALESCE(hl.error_note, '') AS error_note
        FROM {step} st LEFT JOIN {label} hl ON hl.step_id = st.id AND hl.annotator_id = %(user)s
        WHERE st.solution_id = (SELECT solution_id FROM target)
    ), missing AS (
        SELECT step_id, "index" FROM labels
        WHERE value IS NULL
          AND ((SELECT label_mode FROM target) <> %(first_error)s
               OR "index" < COALESCE((SELECT MIN("index") FROM labels WHERE value = -1), "index" + 1))
    )
"""
_MISSING_IDS = '(SELECT array_agg(step_id ORDER BY "index") FROM missing)'

# Time on task: seconds reported by heartbeats and submit are added, but the total never passes the
# wall time since the assignment was handed out (nor goes down).
_SECONDS_ADDED = """
    GREATEST(a.seconds_spent, LEAST(
        a.seconds_spent + %(seconds)s, CEIL(EXTRACT(EPOCH FROM now() - a.created_at))::integer
    ))
"""

# Labels change only while the assignment is open, checked on its latest version: a label write
# bumps the assignment's label_version under `status = open` (which takes the row's lock until
# commit), and submit finishes only the version its snapshot read. Whichever commits first, the
# other sees it: a save after a submit writes nothing, a submit racing a change runs again.
_BUMP = """
    bump AS (
        UPDATE {assignment} AS a SET label_version = a.label_version + 1
        WHERE a.id = %(assignment)s AND a.status = %(open)s AND EXISTS (SELECT 1 FROM allowed)
        RETURNING a.id
    )
"""


def _access(join: str = "") -> str:
    return _ACCESS.replace("{join}", join)


def _labels(value: str) -> str:
    return _LABELS.replace("{value}", value)


def _hints(step_ref: str) -> str:
    return _HINTS.replace("{step_ref}", step_ref)


def _sql(template: str, **fragments: str) -> str:
    """`template` with the table names and the fragments (their own table names filled in) in place,
    its layout squeezed to single spaces outside quoted literals (the statements hold no `--` comments).

    psycopg parses a statement's placeholders once and keeps it prepared only up to 4,096 characters
    (MAX_CACHED_STATEMENT_LENGTH); past that it parses the text again on every request.
    """
    tables = _tables()
    text = template.format(**tables, **{name: text.format(**tables) for name, text in fragments.items()})
    parts = text.split("'")
    return "'".join(re.sub(r"\s+", " ", part) if i % 2 == 0 else part for i, part in enumerate(parts)).strip()


def _run(sql: str, params: dict) -> tuple | None:
    """Run one all-or-nothing statement and fetch its one row.

    A single statement is its own transaction in autocommit mode, so it needs no BEGIN and
    COMMIT round trips; inside a caller's transaction a savepoint keeps a failed statement
    (a unique violation) from breaking it.
    """
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _read(sql: str, params: dict) -> tuple | None:
    """Fetch the one row of a read-only statement (it cannot fail half-way: no savepoint needed)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _run_no_result(sql: str, params: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _access_params(*, user_id: int, staff: bool, project_id: int, assignment_id: int) -> dict:
    return {
        "user": user_id,
        "staff": staff,
        "project": int(project_id),
        "assignment": int(assignment_id),
        "open": Assignment.Status.ASSIGNED,
        "first_error": LabelMode.FIRST_ERROR,
    }


# --- label save ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSaveRow:
    status: str  # the assignment's status
    solution_id: int
    step_index: int
    step_text: str
    sees_hints: bool
    hints: dict  # what the user is shown of the step's machine labels (empty unless sees_hints)
    written: bool  # False: the row was inserted by another request between our look and our insert
    previous: int | None
    changed: bool  # a history row was written
    missing_step_ids: list[int]  # required steps still without a label, this one counted as labelled
    category_ok: bool  # the error category asked for is empty or one the project offers


@cache
def _label_save_sql() -> str:
    # `target` is the access check; `allowed` is empty unless it passed and the assignment is
    # open (and %(write)s: a bad value only asks whether the user may); `bump` (see _BUMP) then
    # re-checks the status on the assignment's latest version, and every write below depends on
    # it: nothing is written once a submit has committed. `old` locks the current row (FOR UPDATE reads the latest committed
    # version), then either the insert or the update runs; the history takes its old value from
    # the locked row. `missing` counts this step as labelled with the new value.
    return _sql(
        """
        WITH target AS (
            SELECT a.status, a.solution_id, st."index", st.text, p.label_mode,
                   (p.show_machine_labels OR %(staff)s OR m.role = ANY(%(overseer)s)) AS sees_hints,
                   (%(category)s = '' OR (p.error_categories_enabled AND jsonb_typeof(p.error_categories) = 'array'
                                          AND p.error_categories ? %(category)s)) AS category_ok
            {access}
        ), allowed AS (
            SELECT sees_hints FROM target WHERE status = %(open)s AND %(write)s AND category_ok
        ), {bump}, hints AS (
            {hints} AND EXISTS (SELECT 1 FROM allowed WHERE sees_hints)
        ), old AS (
            SELECT id, value, shown_hints, error_category, error_note FROM {label}
            WHERE step_id = %(step)s AND annotator_id = %(user)s AND EXISTS (SELECT 1 FROM bump)
            FOR UPDATE
        ), inserted AS (
            INSERT INTO {label} (step_id, annotator_id, value, shown_hints, error_category, error_note, created_at, updated_at)
            SELECT %(step)s, %(user)s, %(value)s, (SELECT shown FROM hints), %(category)s, %(note)s, now(), now()
            WHERE EXISTS (SELECT 1 FROM bump) AND NOT EXISTS (SELECT 1 FROM old)
            ON CONFLICT (step_id, annotator_id) DO NOTHING
            RETURNING id
        ), updated AS (
            UPDATE {label} AS label
            SET value = %(value)s, shown_hints = (SELECT shown FROM hints), error_category = %(category)s,
                error_note = %(note)s, updated_at = now()
            FROM old
            WHERE label.id = old.id
              AND (old.value <> %(value)s OR old.shown_hints <> (SELECT shown FROM hints)
                   OR old.error_category <> %(category)s OR old.error_note <> %(note)s)
            RETURNING label.id
        ), history AS (
            INSERT INTO {change} (step_id, changed_by_id, annotator_id, is_gold, old_value, new_value,
                                  old_category, new_category, new_note, changed_at)
            SELECT %(step)s, %(user)s, %(user)s, false, (SELECT value FROM old), %(value)s,
                   COALESCE((SELECT error_category FROM old), ''), %(category)s, %(note)s, now()
            WHERE EXISTS (SELECT 1 FROM inserted) OR EXISTS (
                SELECT 1 FROM old WHERE value <> %(value)s OR error_category <> %(category)s OR error_note <> %(note)s
            )
            RETURNING id
        ), {labels}
        SELECT target.status, target.solution_id, target."index", target.text, target.sees_hints,
               (SELECT shown FROM hints), EXISTS (SELECT 1 FROM old) OR EXISTS (SELECT 1 FROM inserted),
               (SELECT value FROM old), EXISTS (SELECT 1 FROM history), {missing_ids}, target.category_ok
        FROM target
        """,
        access=_access("JOIN {step} st ON st.solution_id = a.solution_id AND st.id = %(step)s"),
        bump=_BUMP,
        hints=_hints("%(step)s"),
        labels=_labels("CASE WHEN st.id = %(step)s THEN %(value)s ELSE hl.value END"),
        missing_ids=_MISSING_IDS,
    )


def label_save_statement(
    *, user, project_id: int, assignment_id: int, step_id: int, value: int | None, category: str = "", note: str = ""
) -> LabelSaveRow | None:
    """Set `user`'s label (and error category and note) of a step of their own open assignment;
    None when access is refused.

    `value` None writes nothing and only reads (the access check for a value to be rejected);
    neither does a `category` the project does not offer (`category_ok` false). The shape of
    category and note (only with -1, a note only with "other") is the caller's check.
    """
    params = _access_params(
        user_id=user.pk, staff=bool(user.is_staff), project_id=project_id, assignment_id=assignment_id
    ) | {
        "step": int(step_id),
        "overseer": list(OVERSEER_ROLES),
        "mc": AutoLabel.Kind.MC,
        "prm": AutoLabel.Kind.PRM,
        "judge": AutoLabel.Kind.JUDGE,
        "value": 0 if value is None else value,
        "write": value is not None,
        "category": category,
        "note": note,
    }
    row = _run(_label_save_sql(), params)
    if row is None:
        return None
    status, solution_id, index, text, sees_hints, hints, written, previous, changed, missing, category_ok = row
    return LabelSaveRow(
        status=status,
        solution_id=solution_id,
        step_index=index,
        step_text=text,
        sees_hints=sees_hints,
        hints=(json.loads(hints) if isinstance(hints, str) else hints) or {},
        written=written or value is None,
        previous=previous,
        changed=changed,
        missing_step_ids=missing or [],
        category_ok=category_ok,
    )


# --- next item ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NextItemRow:
    work: tuple | None  # columns(Assignment), columns(Solution), columns(Item); None when none
    candidates: int  # open solutions seen for this annotator (0: nothing is left for them)


@cache
def _next_item_sql() -> str:
    a_cols, s_cols, i_cols = rows.columns(Assignment, "a"), rows.columns(Solution, "s"), rows.columns(Item, "i")
    c_cols, t_cols = rows.columns(Assignment, "c"), rows.columns(Solution, "t")
    # The annotator's oldest open assignment in the project if there is one (`mine`); else, when
    # %(take)s, walk the project's open solutions in queue order on their own partial index
    # (solution_queue: by priority, then those other annotators have started, so with overlap
    # k > 1 an item is completed before a new one is opened) to the first one nobody is taking
    # right now (SKIP LOCKED) and this
    # annotator has not had; take a slot only if one is still free in its latest version (the
    # UPDATE re-checks after the lock), closing it when that was the last; create the
    # assignment. A candidate found full (its open flag was stale) is closed instead. A unique
    # violation (the same annotator asking twice at once) rolls the whole statement back.
    return _sql(
        """
        WITH mine AS (
            SELECT a.id FROM {assignment} a JOIN {solution} s ON s.id = a.solution_id
            WHERE a.annotator_id = %(user)s AND a.status = %(status)s AND s.project_id = %(project)s
              AND a.id <> %(exclude)s
            ORDER BY a.created_at, a.id
            LIMIT 1
        ), candidate AS (
            SELECT s.id FROM {solution} s
            WHERE s.project_id = %(project)s AND s.queue_open AND %(take)s AND NOT EXISTS (SELECT 1 FROM mine)
              AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.solution_id = s.id AND a.annotator_id = %(user)s)
            ORDER BY s.priority DESC, (s.slots_taken > 0) DESC, s.id
            LIMIT 1
            FOR UPDATE OF s SKIP LOCKED
        ), taken AS (
            UPDATE {solution} AS s
            SET slots_taken = s.slots_taken + 1, queue_open = s.slots_taken + 1 < %(overlap)s
            FROM candidate WHERE s.id = candidate.id AND s.slots_taken < %(overlap)s
            RETURNING s.*
        ), closed AS (
            UPDATE {solution} AS s SET queue_open = false
            FROM candidate WHERE s.id = candidate.id AND s.slots_taken >= %(overlap)s
            RETURNING s.id
        ), created AS (
            INSERT INTO {assignment} (solution_id, annotator_id, status, reason, is_gold_check, seconds_spent, created_at)
            SELECT taken.id, %(user)s, %(status)s, '', false, 0, now() FROM taken
            RETURNING *
        ), work AS (
            SELECT {a_cols}, {s_cols}, {i_cols} FROM {assignment} a
            JOIN {solution} s ON s.id = a.solution_id JOIN {item} i ON i.id = s.item_id
            WHERE a.id = (SELECT id FROM mine)
            UNION ALL
            SELECT {c_cols}, {t_cols}, {i_cols} FROM created c
            JOIN taken t ON t.id = c.solution_id JOIN {item} i ON i.id = t.item_id
        )
        SELECT work.*, (SELECT COUNT(*) FROM candidate) FROM (SELECT 1) AS one LEFT JOIN work ON true
        """,
        a_cols=a_cols, s_cols=s_cols, i_cols=i_cols, c_cols=c_cols, t_cols=t_cols,
    )


def next_item_statement(
    *, project_id: int, overlap: int, annotator_id: int, exclude_id: int | None, take: bool
) -> NextItemRow:
    """The open assignment, else (when `take`) a new one; IntegrityError when the same annotator raced."""
    params = {
        "project": project_id,
        "overlap": overlap,
        "user": annotator_id,
        "status": Assignment.Status.ASSIGNED,
        "exclude": exclude_id or 0,
        "take": take,
    }
    row = _run(_next_item_sql(), params)
    return NextItemRow(work=None if row[0] is None else row[:-1], candidates=row[-1])


def assignment_from_row(values, *, project: Project, annotator) -> Assignment:
    """The assignment of a `NextItemRow.work`, with its solution, item, project and annotator linked."""
    assignment, solution, item = rows.instances(values, Assignment, Solution, Item)
    item.project, solution.item, assignment.solution, assignment.annotator = project, item, solution, annotator
    return assignment


# --- submit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitRow:
    status: str  # the assignment's status before this statement
    missing_numbers: list[int]  # required steps without a label, 1-based (none with a reason)
    finished: Assignment | None  # the assignment as stored, when this statement finished it


@cache
def _submit_sql() -> str:
    # `target` is the access check (no row: refused). A cannot-judge reason needs no labels. The
    # UPDATE re-checks the status and the label version (_BUMP) on the row's latest version, so a
    # second submit at the same moment changes nothing, and neither does one whose labels changed.
    return _sql(
        """
        WITH target AS (
            SELECT a.id, a.status, a.solution_id, a.label_version, p.label_mode
            {access}
        ), {labels}, finished AS (
            UPDATE {assignment} AS a
            SET status = %(new_status)s, reason = %(reason)s, finished_at = now(),
                seconds_spent = {seconds_added}
            FROM target
            WHERE a.id = target.id AND a.status = %(open)s AND a.label_version = target.label_version
              AND (%(reason)s <> '' OR NOT EXISTS (SELECT 1 FROM missing))
            RETURNING {a_cols}
        )
        SELECT target.status,
               CASE WHEN %(reason)s = '' THEN (SELECT array_agg("index" + 1 ORDER BY "index") FROM missing) END,
               finished.*
        FROM target LEFT JOIN finished ON true
        """,
        access=_access(),
        labels=_labels("hl.value"),
        seconds_added=_SECONDS_ADDED,
        a_cols=rows.columns(Assignment, "a"),
    )


def submit_statement(
    *, user_id: int, staff: bool, project_id: int, assignment_id: int, new_status: str, reason: str, seconds: int
) -> SubmitRow | None:
    """Finish the assignment when allowed and complete; None when access is refused."""
    params = _access_params(user_id=user_id, staff=staff, project_id=project_id, assignment_id=assignment_id) | {
        "reason": reason,
        "new_status": new_status,
        "seconds": seconds,
    }
    row = _run(_submit_sql(), params)
    if row is None:
        return None
    status, missing, finished = row[0], row[1], row[2:]
    return SubmitRow(
        status=status,
        missing_numbers=missing or [],
        finished=None if finished[0] is None else rows.instance(Assignment, finished),
    )


@cache
def _time_add_sql() -> str:
    return _sql(
        "UPDATE {assignment} AS a SET seconds_spent = {seconds_added} WHERE a.id = %(assignment)s AND a.status = %(open)s",
        seconds_added=_SECONDS_ADDED,
    )


def assignment_time_add_statement(*, assignment_id: int, seconds: int) -> None:
    """A heartbeat's seconds, by the same rule as submit's (here so the rule is written once)."""
    _run_no_result(_time_add_sql(), {"assignment": assignment_id, "seconds": seconds, "open": Assignment.Status.ASSIGNED})


# --- the labelling screen -----------------------------------------------------------------


@dataclass(frozen=True)
class ScreenRow:
    images: list[tuple[int, str, int, int]]  # (position, sha256, width, height), in order
    steps: list[dict]  # id, index, text, value (the annotator's label), error_category, error_note, hints (None where hidden)
    missing_step_ids: list[int]  # required steps the annotator has not labelled, in order


@cache
def _screen_sql() -> str:
    return _sql(
        """
        WITH target AS (
            SELECT %(solution)s::bigint AS solution_id, %(label_mode)s::text AS label_mode
        ), {labels}
        SELECT
            (SELECT COALESCE(json_agg(json_build_array(ii.position, im.sha256, im.width, im.height)
                                      ORDER BY ii.position), '[]')
             FROM {item_image} ii JOIN {image} im ON im.id = ii.image_id WHERE ii.item_id = %(item)s),
            (SELECT COALESCE(json_agg(json_build_object(
                        'id', st.id, 'index', st."index", 'text', st.text, 'value', labels.value,
                        'error_category', labels.error_category, 'error_note', labels.error_note,
                        'hints', CASE WHEN %(with_hints)s THEN ({hints}) END)
                    ORDER BY st."index"), '[]')
             FROM {step} st JOIN labels ON labels.step_id = st.id),
            {missing_ids}
        """,
        labels=_labels("hl.value"),
        hints=_hints("st.id"),
        missing_ids=_MISSING_IDS,
    )


def labelling_screen_statement(
    *, solution_id: int, item_id: int | None, annotator_id: int, label_mode: str, with_hints: bool
) -> ScreenRow:
    """The solution's steps with `annotator_id`'s labels (and hints when `with_hints`), the item's
    images (none when `item_id` is None) and the steps still required by the project's label mode."""
    params = {
        "solution": int(solution_id), "item": item_id or 0, "user": annotator_id, "label_mode": label_mode,
        "with_hints": with_hints, "mc": AutoLabel.Kind.MC, "prm": AutoLabel.Kind.PRM, "judge": AutoLabel.Kind.JUDGE,
        "first_error": LabelMode.FIRST_ERROR,
    }
    images, steps, missing = _read(_screen_sql(), params)
    return ScreenRow(images=[tuple(image) for image in images], steps=steps, missing_step_ids=missing or [])


# --- a project with the user's role -------------------------------------------------------


@cache
def _project_member_sql() -> str:
    return _sql(
        """
        SELECT {p_cols}, m.role FROM {project} p
        LEFT JOIN {membership} m ON m.project_id = p.id AND m.user_id = %(user)s
        WHERE p.id = %(project)s
        """,
        p_cols=rows.columns(Project, "p"),
    )


def project_member_statement(*, user_id: int, project_id: int) -> tuple[Project, str | None] | None:
    """The project and `user_id`'s role in it (None: not a member); None when there is no such project."""
    row = _read(_project_member_sql(), {"user": user_id, "project": int(project_id)})
    if row is None:
        return None
    return rows.instance(Project, row[:-1]), row[-1]
