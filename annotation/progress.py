"""Labelling progress for people: per project, per annotator."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from annotation.models import HumanLabel, Membership, Project, Solution, Step


def project_summary(*, project: Project, user, role: str | None) -> dict:
    """One project with `user`'s role in it and the labelling progress (all of it, and `user`'s own)."""
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    steps = Step.objects.filter(solution__item__project=project)
    mine = HumanLabel.objects.filter(step__solution__item__project=project, annotator=user)
    return {
        "id": project.id,
        "name": project.name,
        "role": role,
        "solutions": Solution.objects.filter(item__project=project).count(),
        "steps": steps.count(),
        "labelled_steps": steps.filter(human_labels__isnull=False).aggregate(n=Count("id", distinct=True))["n"],
        "my_steps": mine.count(),
        "my_today": mine.filter(updated_at__gte=today).count(),
    }


def user_project_summaries(*, user) -> list[dict]:
    """The projects `user` belongs to, with their role and labelling progress (home page)."""
    return [
        project_summary(project=membership.project, user=user, role=membership.role)
        for membership in Membership.objects.filter(user=user).select_related("project").order_by("project__name")
    ]
