"""Starting live-PRM pre-label jobs, and recomputing a project's annotation priorities."""

from __future__ import annotations

from annotation.models import Project, Solution
from workers.models import Job
from workers.priority import solution_priority_update
from workers.selection import project_solution_ids, solution_chunks
from workers.services import job_create

PRELABEL_SOLUTIONS_PER_CHUNK = 16
PRIORITY_BATCH = 1000


class NoLivePRM(ValueError):
    """The project has no live PRM version to pre-label with."""


def no_live_prm_message(project: Project) -> str:
    return (
        f"project {project.name!r} has no live PRM version: train one and promote it to live "
        "before starting PRM pre-labels"
    )


def live_prm_version(*, project: Project):
    from prm.models import PRMVersion

    return PRMVersion.objects.filter(project=project, status=PRMVersion.Status.LIVE).first()


def prelabel_job_start(
    *,
    project: Project,
    solution_ids: list[int] | None = None,
    user=None,
    solutions_per_chunk: int = PRELABEL_SOLUTIONS_PER_CHUNK,
) -> Job:
    """Score the steps of a project's solutions (all, or `solution_ids`) with the live PRM.

    Stores AutoLabel(kind="prm", source=<version name>, score=P(+)) per step, replacing that
    version's earlier labels, and recomputes the solutions' priority. Raises NoLivePRM at once
    when the project has no live version, and ValueError for ids outside the project.
    """
    version = live_prm_version(project=project)
    if version is None:
        raise NoLivePRM(no_live_prm_message(project))
    ids = project_solution_ids(project=project, solution_ids=solution_ids, with_steps=True)
    return job_create(
        kind=Job.Kind.PRM_PRELABEL,
        project=project,
        params={"version": version.name},
        chunks=solution_chunks(ids, per_chunk=solutions_per_chunk),
        user=user,
    )


def priority_refresh(*, project: Project) -> int:
    """Recompute the priority of every solution in the project (after imports, MC jobs, a new live PRM)."""
    ids = list(Solution.objects.filter(item__project=project).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), PRIORITY_BATCH):
        solution_priority_update(solution_ids=ids[start : start + PRIORITY_BATCH])
    return len(ids)
