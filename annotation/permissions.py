"""Who may do what in a project. Views call these instead of spelling the rules out again.

- Staff users may do anything in any project.
- A project's members may see it; only members with the admin role may administer it
  (import, export, manage people).
- Anyone else is told the project does not exist (404), so ids do not leak which projects exist.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404

from annotation.models import Assignment, Item, Membership, Project, Role, Solution
from stepmark import rows


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
    sql = (
        f"SELECT {rows.columns(Project, 'p')}, m.role FROM {Project._meta.db_table} p "
        f"LEFT JOIN {Membership._meta.db_table} m ON m.project_id = p.id AND m.user_id = %s WHERE p.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, int(project_id)])
        row = cursor.fetchone()
    if row is None:
        raise Http404("No such project.")
    project, role = rows.instance(Project, row[:-1]), row[-1]
    project._role_of = (user.pk, role)
    if user.is_staff or role is not None:
        return project
    raise Http404("No such project.")


def project_for_admin(user, project_id: int) -> Project:
    """The project if `user` may administer it; Http404 for outsiders, PermissionDenied for other members."""
    project = project_for_member(user, project_id)
    if not can_administer(user, project):
        raise PermissionDenied("Only the project's admins may do this.")
    return project


def assignment_for_member(user, project_id: int, assignment_id: int) -> Assignment:
    """`user`'s own assignment in the project, with its solution, item and project, in one query.

    Http404 for outsiders, for another member's assignment and for another project's.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such project.")
    tables = {model: model._meta.db_table for model in (Assignment, Solution, Item, Project, Membership)}
    sql = (
        f"SELECT {rows.columns(Assignment, 'a')}, {rows.columns(Solution, 's')}, {rows.columns(Item, 'i')}, "
        f"{rows.columns(Project, 'p')}, m.role "
        f"FROM {tables[Assignment]} a JOIN {tables[Solution]} s ON s.id = a.solution_id "
        f"JOIN {tables[Item]} i ON i.id = s.item_id JOIN {tables[Project]} p ON p.id = i.project_id "
        f"LEFT JOIN {tables[Membership]} m ON m.project_id = p.id AND m.user_id = %s "
        f"WHERE a.id = %s AND a.annotator_id = %s AND p.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, int(assignment_id), user.pk, int(project_id)])
        row = cursor.fetchone()
    if row is None or (row[-1] is None and not user.is_staff):
        raise Http404("No such assignment.")
    assignment, solution, item, project = rows.instances(row[:-1], Assignment, Solution, Item, Project)
    project._role_of = (user.pk, row[-1])
    item.project, solution.item, assignment.solution = project, item, solution
    assignment.annotator = user  # the requester: no second query when a service reads it
    return assignment
