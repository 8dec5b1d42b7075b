"""Edits of projects and items made outside the queue (the admin): the queue's columns follow.

Called explicitly by whoever edits; no model signal does it behind the caller's back.
"""

from __future__ import annotations

from django.db import transaction

from annotation.models import Item, Membership, Project, Role, Solution
from annotation.services.queue import project_queue_reopen, solution_slots_recount


def project_save(*, project: Project) -> Project:
    """Save a new or edited project; a changed overlap reopens or closes its solutions in the queue."""
    with transaction.atomic():
        before = (
            Project.objects.select_for_update().filter(pk=project.pk).values_list("overlap", flat=True).first()
            if project.pk
            else None
        )
        project.save()
        if before is not None and before != project.overlap:
            project_queue_reopen(project_id=project.pk, overlap=project.overlap)
    return project


def item_save(*, item: Item) -> Item:
    """Save a new or edited item; an item moved to another project takes its solutions' queue entries along."""
    with transaction.atomic():
        item.save()
        moved = list(
            Solution.objects.filter(item=item).exclude(project_id=item.project_id).values_list("pk", flat=True)
        )
        if moved:
            Solution.objects.filter(pk__in=moved).update(project_id=item.project_id)
            solution_slots_recount(solution_ids=moved)  # the other project's overlap decides if they are open
    return item


def project_create(*, project: Project, creator) -> Project:
    """Save a new project and make `creator` its first admin member (so it is on their home page)."""
    with transaction.atomic():
        project_save(project=project)
        Membership.objects.create(project=project, user=creator, role=Role.ADMIN)
    return project
