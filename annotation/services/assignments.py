"""Deleting assignments, or the people who hold them: the slots they held go back to the queue.

Called explicitly (the admin uses these); a plain queryset delete would leave `slots_taken` high.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import transaction

from annotation.models import Assignment
from annotation.services.queue import solution_slots_recount


def assignment_delete(*, assignment_ids: Iterable[int]) -> int:
    """Delete these assignments and recount their solutions' slots; returns how many were deleted."""
    ids = list(assignment_ids)
    with transaction.atomic():
        solution_ids = list(Assignment.objects.filter(pk__in=ids).values_list("solution_id", flat=True).distinct())
        deleted = Assignment.objects.filter(pk__in=ids).delete()[1].get(Assignment._meta.label, 0)
        solution_slots_recount(solution_ids=solution_ids)
    return deleted


def user_delete(*, user_ids: Iterable[int]) -> None:
    """Delete these users (their assignments and labels go with them) and free the slots they held."""
    ids = list(user_ids)
    with transaction.atomic():
        solution_ids = list(
            Assignment.objects.filter(annotator_id__in=ids).values_list("solution_id", flat=True).distinct()
        )
        get_user_model().objects.filter(pk__in=ids).delete()
        solution_slots_recount(solution_ids=solution_ids)
