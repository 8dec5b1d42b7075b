"""Keep Solution.slots_taken true when assignments disappear outside the queue (cascades, admin)."""

from __future__ import annotations

from django.db.models import F
from django.db.models.signals import post_delete
from django.dispatch import receiver

from annotation.models import Assignment, Solution


@receiver(post_delete, sender=Assignment, dispatch_uid="assignment_releases_slot")
def assignment_releases_slot(sender, instance: Assignment, **kwargs) -> None:
    if instance.holds_slot:
        Solution.objects.filter(pk=instance.solution_id, slots_taken__gt=0).update(slots_taken=F("slots_taken") - 1)
