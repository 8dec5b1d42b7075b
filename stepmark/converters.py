"""URL converters. Ids in URLs are database keys: one past bigint must be a 404, not a database error."""

from __future__ import annotations

# PostgreSQL bigint (BigAutoField), the widest key any table uses.
MAX_ID = 2**63 - 1


class IdConverter:
    """`<id:name>`: a positive integer that fits a bigint key; anything larger matches no route."""

    regex = "[0-9]{1,20}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is past the largest id")  # Django turns this into "no match"
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def register_id_converter() -> None:
    from django.urls import register_converter
    from django.urls.converters import get_converters

    if "id" not in get_converters():
        register_converter(IdConverter, "id")
