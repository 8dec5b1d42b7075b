"""Model instances from hand-written SQL, for the few requests annotators make on every click.

Building an ORM query costs about a millisecond of Python per query on a small machine, more
than the database takes to answer; the label save, next item and submit read their rows with
plain SQL instead. These helpers name a model's columns and turn a row back into an instance
with the same converters the ORM applies (JSON fields decoded, and so on).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from django.db import connection, models


@cache
def columns(model: type[models.Model], alias: str) -> str:
    """`alias."col", ...` for every concrete field of `model`, in field order."""
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def width(model: type[models.Model]) -> int:
    return len(model._meta.concrete_fields)


@cache
def _loader(model: type[models.Model]) -> tuple[list[str], list[tuple]]:
    """The attribute names and, per field, (column, converters) as the ORM's compiler would use."""
    fields = model._meta.concrete_fields
    converters = []
    for field in fields:
        column = field.cached_col
        converters.append((column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)))
    return [field.attname for field in fields], converters


def instance(model: type[models.Model], values: Sequence) -> models.Model:
    """The model instance for one row slice read with `columns(model, ...)`."""
    attnames, converters = _loader(model)
    converted = []
    for (column, functions), value in zip(converters, values, strict=True):
        for function in functions:
            value = function(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, attnames, converted)


def instances(row: Sequence, *model_list: type[models.Model]) -> list[models.Model]:
    """Split a row read with `columns(A, a), columns(B, b), ...` into instances of A, B, ..."""
    out, start = [], 0
    for model in model_list:
        end = start + width(model)
        out.append(instance(model, row[start:end]))
        start = end
    return out
