"""The reads behind next item and submit, in plain SQL (see stepmark.rows for why).

The pages and the REST API share them, so an annotator's every move costs the same few queries;
`solution_work` returns the images and the steps together (one round trip on PostgreSQL).
"""

from __future__ import annotations

from functools import cache

import orjson
from django.db import connection

from annotation.models import (
    Assignment,
    AutoLabel,
    HumanLabel,
    Image,
    Item,
    ItemImage,
    Project,
    Solution,
    Step,
)
from annotation.visibility import hints_entry
from stepmark import rows


def _all(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def open_assignment_id(*, project_id: int, annotator_id: int, exclude_id: int | None = None) -> int | None:
    """The annotator's oldest unfinished assignment in the project."""
    a, s = Assignment._meta.db_table, Solution._meta.db_table
    found = _all(
        f"SELECT a.id FROM {a} a JOIN {s} s ON s.id = a.solution_id "
        f"WHERE a.annotator_id = %s AND a.status = %s AND s.project_id = %s AND a.id <> %s "
        f"ORDER BY a.created_at, a.id LIMIT 1",
        [annotator_id, Assignment.Status.ASSIGNED, project_id, exclude_id or 0],
    )
    return found[0][0] if found else None


def assignment_with_work(*, assignment_id: int, project: Project, annotator) -> Assignment:
    """The assignment with its solution and item loaded (and the given project and annotator attached)."""
    a, s, i = Assignment._meta.db_table, Solution._meta.db_table, Item._meta.db_table
    (row,) = _all(
        f"SELECT {rows.columns(Assignment, 'a')}, {rows.columns(Solution, 's')}, {rows.columns(Item, 'i')} "
        f"FROM {a} a JOIN {s} s ON s.id = a.solution_id JOIN {i} i ON i.id = s.item_id WHERE a.id = %s",
        [assignment_id],
    )
    return assignment_from_row(row, project=project, annotator=annotator)


def assignment_from_row(row, *, project: Project, annotator) -> Assignment:
    """An assignment from a row of `columns(Assignment), columns(Solution), columns(Item)`, all linked."""
    assignment, solution, item = rows.instances(row, Assignment, Solution, Item)
    item.project, solution.item, assignment.solution, assignment.annotator = project, item, solution, annotator
    return assignment


def steps_for_labelling(*, solution_id: int, with_hints: bool) -> list[dict]:
    """The solution's steps in order: id, index, text and (when shown) the machine hints."""
    found = _all(
        f'SELECT st.id, st."index", st.text, al.kind, al.source, al.score, al.num_correct, al.num_total '
        f"FROM {Step._meta.db_table} st LEFT JOIN {AutoLabel._meta.db_table} al "
        f"ON al.step_id = st.id AND %s AND al.kind IN (%s, %s) "
        f'WHERE st.solution_id = %s ORDER BY st."index", al.id',
        [with_hints, AutoLabel.Kind.MC, AutoLabel.Kind.PRM, solution_id],
    )
    return _steps(found, with_hints=with_hints)


def _steps(found, *, with_hints: bool) -> list[dict]:
    """Step rows (id, index, text, then one hint's kind, source, score, right, total or NULLs) as dicts."""
    steps: dict[int, dict] = {}
    for id_, index, text, kind, source, score, right, total in found:
        step = steps.get(id_)
        if step is None:
            step = steps[id_] = {"id": id_, "index": index, "text": text, "hints": {} if with_hints else None}
        if kind is not None:
            hints_entry(step["hints"], kind=kind, source=source, score=score, right=right, total=total)
    return list(steps.values())


def item_images(*, item_id: int) -> list[tuple[int, str, int, int]]:
    """(position, sha256, width, height) of the item's images, in order."""
    return _all(
        f"SELECT ii.position, im.sha256, im.width, im.height FROM {ItemImage._meta.db_table} ii "
        f"JOIN {Image._meta.db_table} im ON im.id = ii.image_id WHERE ii.item_id = %s ORDER BY ii.position",
        [item_id],
    )


@cache
def _solution_work_sql() -> str:
    # The two reads above as JSON arrays of rows, so they come back in one round trip.
    return (
        "SELECT (SELECT json_agg(json_build_array(ii.position, im.sha256, im.width, im.height) ORDER BY ii.position) "
        f"FROM {ItemImage._meta.db_table} ii JOIN {Image._meta.db_table} im ON im.id = ii.image_id "
        "WHERE ii.item_id = %s), "
        '(SELECT json_agg(json_build_array(st.id, st."index", st.text, al.kind, al.source, al.score, '
        'al.num_correct, al.num_total) ORDER BY st."index", al.id) '
        f"FROM {Step._meta.db_table} st LEFT JOIN {AutoLabel._meta.db_table} al "
        "ON al.step_id = st.id AND %s AND al.kind IN (%s, %s) WHERE st.solution_id = %s)"
    )


def solution_work(*, solution_id: int, item_id: int, with_hints: bool) -> tuple[list[tuple], list[dict]]:
    """What an annotator is shown of a solution: `item_images` and `steps_for_labelling` together.

    One round trip on PostgreSQL (next item answers with both); two elsewhere.
    """
    if connection.vendor != "postgresql":
        return item_images(item_id=item_id), steps_for_labelling(solution_id=solution_id, with_hints=with_hints)
    ((images, steps),) = _all(
        _solution_work_sql(), [item_id, with_hints, AutoLabel.Kind.MC, AutoLabel.Kind.PRM, solution_id]
    )
    return [tuple(image) for image in _json(images)], _steps(_json(steps), with_hints=with_hints)


def _json(value) -> list:
    # Django's PostgreSQL backend hands json columns over as text (its JSONField decodes them).
    if value is None:
        return []
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def steps_with_labels(*, solution_id: int, annotator_id: int) -> list[tuple[int, int, int | None]]:
    """(step id, index, the annotator's label or None) for every step of the solution, in order."""
    return _all(
        f'SELECT st.id, st."index", hl.value FROM {Step._meta.db_table} st '
        f"LEFT JOIN {HumanLabel._meta.db_table} hl ON hl.step_id = st.id AND hl.annotator_id = %s "
        f'WHERE st.solution_id = %s ORDER BY st."index"',
        [annotator_id, solution_id],
    )
