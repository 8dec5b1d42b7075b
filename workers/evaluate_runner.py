"""The "evaluate" job: held-out gold evaluation of a new candidate, then promote-or-not; or, with a
`benchmark_project_id`, a version scored on a whole benchmark project (prm.benchmark).

The train runner calls `evaluate_job_start` for each new candidate inside its final transaction,
so the evaluate job exists exactly when the candidate does and is enqueued after the commit.
"""

from __future__ import annotations

from django.db import transaction

from annotation.models import Project
from prm.benchmark import benchmark_evaluate, benchmark_record
from prm.models import PRMVersion
from prm.registry import comparable_evaluations, live_version, version_promote_if_better
from workers.errors import PermanentJobError
from workers.models import Job, JobChunk
from workers.services import chunk_finish, job_create


def evaluate_job_start(*, version: PRMVersion, promote: bool = True, margin: float | None = None, user=None) -> Job:
    """Queue the evaluation of `version` (and, with `promote`, the gated promotion after it)."""
    return job_create(
        kind=Job.Kind.EVALUATE, project=version.project, user=user,
        params={"version_id": version.pk, "promote": promote, "margin": margin},
    )


def benchmark_job_start(*, version: PRMVersion, project: Project, user=None) -> Job:
    """Queue the scoring of `version` on the benchmark `project` (its report is kept as an Evaluation)."""
    return job_create(
        kind=Job.Kind.EVALUATE, project=project, user=user,
        params={"version_id": version.pk, "benchmark_project_id": project.pk},
    )


def run_evaluation(chunk: JobChunk) -> dict:
    params = chunk.job.params
    version = PRMVersion.objects.select_related("project", "created_from").filter(pk=params.get("version_id")).first()
    if version is None:
        raise PermanentJobError(f"PRM version {params.get('version_id')} does not exist")
    if params.get("benchmark_project_id"):
        return _run_benchmark(chunk, version, params["benchmark_project_id"])
    # Scoring is slow and stores its Evaluation rows itself (a repeated measurement is harmless);
    # the decision and the chunk's completion then commit together, so a decision is made once.
    candidate_eval, _ = comparable_evaluations(candidate=version, live=live_version(version.project))
    counts = {"evaluations": 1, "macro_f1": candidate_eval.metrics.get("macro_f1")}
    with transaction.atomic():
        if params.get("promote", True):
            decision = version_promote_if_better(version=version, margin=params.get("margin"))
            counts["decision"] = decision.action
        chunk_finish(chunk=chunk, counts=counts)
    return counts


def _run_benchmark(chunk: JobChunk, version: PRMVersion, project_id: int) -> dict:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        raise PermanentJobError(f"benchmark project {project_id} does not exist")
    from prm.core.scoring import PRMScorer

    report = benchmark_evaluate(project=project, scorer=PRMScorer(version.directory))
    report["model"] = {"directory": version.directory, "version": version.name}
    with transaction.atomic():
        evaluation = benchmark_record(version=version, project=project, report=report)
        counts = {"evaluations": 1, "evaluation_id": evaluation.pk,
                  "macro_f1": (report.get("overall") or {}).get("macro_f1")}
        chunk_finish(chunk=chunk, counts=counts)
    return counts
