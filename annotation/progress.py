"""Labelling progress for people: per project, per annotator."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from annotation.models import HumanLabel, Membership, Project, Role, Solution, Step


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
    """The projects `user` belongs to (staff: every project), with their role and labelling progress (home page).

    `administers` and `oversees` say which of the project's pages the user may open (staff: all of them).
    """
    staff = bool(user.is_staff)
    roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
    projects = Project.objects.order_by("name") if staff else Project.objects.filter(pk__in=roles).order_by("name")
    summaries = []
    for project in projects:
        role = roles.get(project.pk)
        summary = project_summary(project=project, user=user, role=role)
        summary["administers"] = staff or role == Role.ADMIN
        summary["oversees"] = staff or role in (Role.ADMIN, Role.REVIEWER)
        summaries.append(summary)
    return summaries
