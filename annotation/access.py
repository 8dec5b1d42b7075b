"""Who may do what in a project, and what help they see while labelling. Views and the API call
these instead of spelling the rules out again.

- Staff users may do anything in any project.
- A project's members may see it; only members with the admin role may administer it
  (import, export, manage people); reviewers and admins review and set gold labels.
- Staff, and people given the `annotation.add_project` permission, create projects; the creator
  becomes the new project's admin.
- Anyone else is told the project does not exist (404), so ids do not leak which projects exist;
  a member without the role needed gets PermissionDenied (403).
- Overseers (reviewers, admins, staff) always see machine hints and the reference answer;
  annotators see them only where the project allows (hints anchor judgements).

A solution's project is read through the solution's own copy (`Solution.project`), as the label
save and the queue do, so every access check follows the same link.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404

from annotation.models import OVERSEER_ROLES, Assignment, Membership, Project, Role
from annotation.services.statements import project_member_statement


def _signed_in(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def _role_subquery(user, project_ref: str) -> Subquery:
    """The user's role in the project named by `project_ref` (an outer column), NULL when not a member."""
    return Subquery(
        Membership.objects.filter(project_id=OuterRef(project_ref), user_id=user.pk).values("role")[:1]
    )


def _remember_role(project: Project, user, role: str | None) -> None:
    project._role_of = (user.pk, role)  # read by project_role: no second query for the same user


def project_role(user, project: Project) -> str | None:
    """The user's role in `project`, or None when not a member."""
    if not getattr(user, "is_authenticated", False):
        return None
    known = getattr(project, "_role_of", None)  # read along with the project by the loaders below
    if known is not None and known[0] == user.pk:
        return known[1]
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def is_overseer(user, project: Project) -> bool:
    """Staff, or a reviewer or admin of the project: the one rule for who oversees labelling."""
    return _signed_in(user) and (bool(user.is_staff) or project_role(user, project) in OVERSEER_ROLES)


def can_administer(user, project: Project) -> bool:
    return _signed_in(user) and (user.is_staff or project_role(user, project) == Role.ADMIN)


def can_create_project(user) -> bool:
    """Staff, and people given the `annotation.add_project` permission, create projects."""
    return _signed_in(user) and (bool(user.is_staff) or user.has_perm("annotation.add_project"))


def require_project_creator(user) -> None:
    if not can_create_project(user):
        raise PermissionDenied("Only staff and people allowed to create projects may do this.")


def sees_machine_hints(user, project: Project) -> bool:
    return project.show_machine_labels or is_overseer(user, project)


def sees_reference_answer(user, project: Project) -> bool:
    return project.show_reference_answer or is_overseer(user, project)


def project_for_member(user, project_id: int) -> Project:
    """The project if `user` is staff or a member of it; Http404 otherwise. One query, with the role."""
    if not _signed_in(user):
        raise Http404("No such project.")
    found = project_member_statement(user_id=user.pk, project_id=project_id)
    if found is None or (found[1] is None and not user.is_staff):
        raise Http404("No such project.")
    project, role = found
    _remember_role(project, user, role)
    return project


def project_for_admin(user, project_id: int) -> Project:
    """The project if `user` may administer it; Http404 for outsiders, PermissionDenied for other members."""
    project = project_for_member(user, project_id)
    if not can_administer(user, project):
        raise PermissionDenied("Only the project's admins may do this.")
    return project


def project_for_reviewer(user, project_id: int) -> Project:
    """Reviewers, admins and staff; other members get PermissionDenied, outsiders Http404."""
    project = project_for_member(user, project_id)
    if not is_overseer(user, project):
        raise PermissionDenied("Only the project's reviewers may do this.")
    return project


def assignment_for_member(user, project_id: int, assignment_id: int) -> Assignment:
    """`user`'s own assignment in the project, with its solution, item and project, in one query.

    Http404 for outsiders, for another member's assignment and for another project's.
    """
    if not _signed_in(user):
        raise Http404("No such project.")
    assignment = (
        Assignment.objects.select_related("solution__item", "solution__project")
        .annotate(member_role=_role_subquery(user, "solution__project_id"))
        .filter(pk=int(assignment_id), annotator_id=user.pk, solution__project_id=int(project_id))
        .first()
    )
    if assignment is None or (assignment.member_role is None and not user.is_staff):
        raise Http404("No such assignment.")
    solution = assignment.solution
    solution.item.project = solution.project  # the same row: no query when a caller reads item.project
    _remember_role(solution.project, user, assignment.member_role)
    assignment.annotator = user  # the requester: no second query when a service reads it
    return assignment
