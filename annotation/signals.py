"""Keep the queue's columns true when rows change outside the queue (cascades, admin edits)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from annotation.models import Assignment, Item, Project, Solution
from annotation.services.queue import project_queue_reopen, solution_slot_release, solution_slots_recount


@receiver(post_delete, sender=Assignment, dispatch_uid="assignment_releases_slot")
def assignment_releases_slot(sender, instance: Assignment, **kwargs) -> None:
    if instance.holds_slot:
        solution_slot_release(solution_id=instance.solution_id)


@receiver(pre_save, sender=Project, dispatch_uid="project_remembers_overlap")
def project_remembers_overlap(sender, instance: Project, **kwargs) -> None:
    instance._overlap_before = (
        Project.objects.filter(pk=instance.pk).values_list("overlap", flat=True).first() if instance.pk else None
    )


@receiver(post_save, sender=Project, dispatch_uid="project_overlap_reopens_queue")
def project_overlap_reopens_queue(sender, instance: Project, created: bool, **kwargs) -> None:
    before = getattr(instance, "_overlap_before", None)
    if not created and before is not None and before != instance.overlap:
        project_queue_reopen(project_id=instance.pk, overlap=instance.overlap)


@receiver(post_save, sender=Item, dispatch_uid="item_move_moves_solutions")
def item_move_moves_solutions(sender, instance: Item, created: bool, **kwargs) -> None:
    """An item edited into another project takes its solutions' queue entries along."""
    if created:
        return
    moved = list(
        Solution.objects.filter(item=instance).exclude(project_id=instance.project_id).values_list("pk", flat=True)
    )
    if moved:
        Solution.objects.filter(pk__in=moved).update(project_id=instance.project_id)
        solution_slots_recount(solution_ids=moved)  # the other project's overlap decides if they are open
