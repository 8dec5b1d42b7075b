"""Who may do what in a project. Views call these instead of spelling the rules out again.

- Staff users may do anything in any project.
- A project's members may see it; only members with the admin role may administer it
  (import, export, manage people).
- Anyone else is told the project does not exist (404), so ids do not leak which projects exist.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404

from annotation.models import Membership, Project, Role


def project_role(user, project: Project) -> str | None:
    """The user's role in `project`, or None when not a member."""
    if not getattr(user, "is_authenticated", False):
        return None
    known = getattr(project, "_role_of", None)  # read along with the project by project_for_member
    if known is not None and known[0] == user.pk:
        return known[1]
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def can_administer(user, project: Project) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_staff or project_role(user, project) == Role.ADMIN


def project_for_member(user, project_id: int) -> Project:
    """The project if `user` is staff or a member of it; Http404 otherwise."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such project.")
    # One query: the project and the user's role in it (pages and API calls all start here).
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    project = Project.objects.filter(pk=project_id).annotate(member_role=Subquery(role)).first()
    if project is None:
        raise Http404("No such project.")
    project._role_of = (user.pk, project.member_role)
    if user.is_staff or project.member_role is not None:
        return project
    raise Http404("No such project.")


def project_for_admin(user, project_id: int) -> Project:
    """The project if `user` may administer it; Http404 for outsiders, PermissionDenied for other members."""
    project = project_for_member(user, project_id)
    if not can_administer(user, project):
        raise PermissionDenied("Only the project's admins may do this.")
    return project
