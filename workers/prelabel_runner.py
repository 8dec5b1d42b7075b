"""The live-PRM pre-label runner: P(+) per step from the project's live PRM version.

A chunk scores its solutions item by item (the solutions of one question share a batch, as in
Best-of-N), then stores the labels with an upsert, finishes the chunk and recomputes the
solutions' priority in one transaction: a rerun replaces, never duplicates.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

from django.db import transaction

from annotation.models import AutoLabel, ItemImage, Solution, Step
from workers.errors import PermanentJobError, TransientJobError
from workers.models import JobChunk
from workers.prelabel_services import live_prm_version, no_live_prm_message
from workers.priority import solution_priority_update
from workers.services import ChunkLost, chunk_finish, chunk_heartbeat, job_is_cancelled

logger = logging.getLogger(__name__)

# One loaded PRM per worker process, keyed by its folder: loading it for every chunk would dominate.
_scorer_cache: dict[str, object] = {}


def cached_scorer(directory: str):
    """The PRMScorer of `directory`, loaded once per process (an older one is dropped first)."""
    if directory not in _scorer_cache:
        import torch

        from prm.core.scoring import PRMScorer

        if not (Path(directory) / "config.json").is_file():
            raise PermanentJobError(f"PRM folder {directory!r} holds no model (no config.json there)")
        _scorer_cache.clear()
        on_gpu = torch.cuda.is_available()
        _scorer_cache[directory] = PRMScorer(
            directory, device="cuda" if on_gpu else "cpu", dtype=torch.bfloat16 if on_gpu else torch.float32
        )
    return _scorer_cache[directory]


def item_pil_images(item_id: int) -> list:
    from PIL import Image as PILImage

    images = []
    for link in ItemImage.objects.filter(item_id=item_id).select_related("image").order_by("position"):
        with link.image.file.open("rb") as handle:
            image = PILImage.open(io.BytesIO(handle.read()))
            images.append(image.convert("RGB"))
    return images


def run_prm_prelabel(chunk: JobChunk) -> dict:
    import torch  # here, not at import: the web process registers runners too and needs no torch

    job = chunk.job
    version = live_prm_version(project=job.project)
    if version is None:
        raise PermanentJobError(no_live_prm_message(job.project))
    scorer = cached_scorer(version.directory)
    solutions = list(
        Solution.objects.filter(pk__in=chunk.params.get("solution_ids", []), item__project_id=job.project_id)
        .select_related("item")
        .order_by("pk")
    )
    steps_of: dict[int, list[Step]] = defaultdict(list)
    for step in Step.objects.filter(solution__in=solutions).order_by("solution_id", "index"):
        steps_of[step.solution_id].append(step)
    by_item: dict[int, list[Solution]] = defaultdict(list)
    for solution in solutions:
        if steps_of[solution.pk]:
            by_item[solution.item_id].append(solution)

    labels: list[AutoLabel] = []
    for group in by_item.values():
        if job_is_cancelled(job_id=job.pk):
            raise ChunkLost(f"job {job.pk} was cancelled")
        item = group[0].item
        try:
            scores = scorer.score_solutions(
                question=item.question,
                solutions=[[step.text for step in steps_of[solution.pk]] for solution in group],
                images=item_pil_images(item.pk),
            )
        except torch.cuda.OutOfMemoryError as exc:
            # Another process may hold the GPU for a while: worth a retry with backoff.
            torch.cuda.empty_cache()
            raise TransientJobError(f"CUDA out of memory scoring item {item.external_id}: {exc}") from exc
        for solution, step_scores in zip(group, scores, strict=True):
            for step, score in zip(steps_of[solution.pk], step_scores, strict=True):
                # Clamped: a bf16 softmax can round a hair past 1, which the score constraint refuses.
                labels.append(AutoLabel(step=step, kind=AutoLabel.Kind.PRM, source=version.name, score=min(1.0, max(0.0, score))))
        chunk_heartbeat(chunk=chunk)

    counts = {"solutions": sum(len(group) for group in by_item.values()), "steps_labelled": len(labels)}
    with transaction.atomic():
        AutoLabel.objects.bulk_create(
            labels, update_conflicts=True, unique_fields=["step", "kind", "source"], update_fields=["score"]
        )
        chunk_finish(chunk=chunk, counts=counts)
        solution_priority_update(solution_ids=[solution.pk for solution in solutions])
    logger.info("chunk %s: %s steps pre-labelled by %s", chunk.pk, len(labels), version.name)
    return counts
