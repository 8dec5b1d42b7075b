"""Starting Monte Carlo labelling and solution sampling jobs: validate, split into chunks, enqueue."""

from __future__ import annotations

from dataclasses import asdict

from django.db.models import Count, Q

from annotation.models import Item, Project
from prm.core import mc
from workers.generation.base import BACKENDS, SamplingParams, backend_label
from workers.models import Job
from workers.selection import id_chunks, project_solution_ids
from workers.services import job_create

DEFAULT_SOLUTIONS_PER_CHUNK = 4
DEFAULT_ITEMS_PER_CHUNK = 4


def _checked_backend(backend: dict) -> dict:
    if backend.get("backend") not in BACKENDS:
        raise ValueError(f"backend must name one of {', '.join(BACKENDS)}; got {backend.get('backend')!r}")
    return dict(backend)


def mc_job_start(
    *,
    project: Project,
    backend: dict,
    solution_ids: list[int] | None = None,
    strategy: str = "exhaustive",
    k: int = mc.DEFAULT_K,
    round_size: int = mc.DEFAULT_ROUND_SIZE,
    max_steps: int = mc.DEFAULT_MAX_STEPS,
    early_stop: bool = False,
    sampling: dict | None = None,
    source: str | None = None,
    overwrite: bool = False,
    solutions_per_chunk: int = DEFAULT_SOLUTIONS_PER_CHUNK,
    user=None,
) -> Job:
    """Label the steps of a project's solutions (all, or `solution_ids`) with MC estimates.

    Labels are stored as AutoLabel(kind="mc", source=`source`, default the policy's name,
    estimate=how they were obtained); solutions already labelled by that source are skipped unless
    `overwrite`. `sampling` overrides the reference's (temperature 1.0, top_p 1.0, top_k 50, 4096
    new tokens). `early_stop` (the released pipeline's default, off as VisualPRM400K-v1.1 was built)
    leaves the steps after the first with mc = 0 unsampled and unlabelled.
    """
    if strategy not in mc.STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(mc.STRATEGIES)}; got {strategy!r}")
    if k < 1 or round_size < 1 or max_steps < 1:
        raise ValueError("k, round_size and max_steps must be at least 1")
    sampling_params = SamplingParams.from_dict({"temperature": 1.0, **(sampling or {})})
    ids = project_solution_ids(project=project, solution_ids=solution_ids)
    backend = _checked_backend(backend)
    params = {
        "strategy": strategy,
        "k": k,
        "round_size": round_size,
        "max_steps": max_steps,
        "early_stop": bool(early_stop),
        "backend": backend,
        "sampling": asdict(sampling_params),
        "source": source or backend_label(backend),
        "overwrite": overwrite,
    }
    return job_create(
        kind=Job.Kind.MC_LABEL,
        project=project,
        params=params,
        chunks=id_chunks(ids, per_chunk=solutions_per_chunk),
        user=user,
    )


def sample_job_start(
    *,
    project: Project,
    backend: dict,
    n: int = 4,
    policy: str | None = None,
    item_ids: list[int] | None = None,
    sampling: dict | None = None,
    items_per_chunk: int = DEFAULT_ITEMS_PER_CHUNK,
    user=None,
) -> Job:
    """Sample solutions until every item (all, or `item_ids`) has `n` from this policy.

    Solutions are keyed "<policy>-sample-<i>", so rerunning samples only the missing ones.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    backend = _checked_backend(backend)
    policy = policy or backend_label(backend)
    sampling_params = SamplingParams.from_dict({"temperature": 1.0, **(sampling or {})})
    keys = [f"{policy}-sample-{i}" for i in range(n)]
    items = Item.objects.filter(project=project)
    if item_ids is not None:
        items = items.filter(pk__in=item_ids)
    short = items.annotate(have=Count("solutions", filter=Q(solutions__key__in=keys))).filter(have__lt=n)
    ids = list(short.order_by("pk").values_list("pk", flat=True))
    params = {"n": n, "policy": policy, "backend": backend, "sampling": asdict(sampling_params)}
    return job_create(
        kind=Job.Kind.SAMPLE_SOLUTIONS,
        project=project,
        params=params,
        chunks=id_chunks(ids, per_chunk=items_per_chunk, key="item_ids"),
        user=user,
    )
