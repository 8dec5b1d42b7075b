"""Runners for Monte Carlo step labels and solution sampling.

Both compute a chunk's results first and store them, with chunk_finish, in one transaction: a
worker killed mid-chunk leaves nothing behind and the chunk's rerun stores everything once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace

from django.conf import settings
from django.db import transaction

from annotation.models import AutoLabel, Item, ItemImage, Solution, Step
from annotation.steps import join_steps, split_steps
from prm.core import mc
from workers.generation.base import GenerationBackend, GenerationRequest, SamplingParams, backend_from_params
from workers.generation.prompting import solution_messages
from workers.models import JobChunk
from workers.services import ChunkLost, ProgressReporter, chunk_finish, job_is_cancelled

logger = logging.getLogger(__name__)

# One loaded back end per worker process: loading a model for every chunk would dominate the time.
_backend_cache: dict[str, GenerationBackend] = {}


def cached_backend(params: dict) -> GenerationBackend:
    key = json.dumps(params, sort_keys=True)
    if key not in _backend_cache:
        for old in _backend_cache.values():
            old.close()
        _backend_cache.clear()
        _backend_cache[key] = backend_from_params(params)
    return _backend_cache[key]


def item_images(item: Item) -> list[bytes]:
    images = []
    for link in ItemImage.objects.filter(item=item).select_related("image").order_by("position"):
        with link.image.file.open("rb") as handle:
            images.append(handle.read())
    return images


def round_seed(base: int | None, *parts) -> int | None:
    """A distinct, reproducible seed per request: the same seed in every round would repeat samples."""
    if base is None:
        return None
    digest = hashlib.sha256(json.dumps([base, *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big")


class SolutionOracle:
    """The MC oracle of one solution: continue prefixes with the policy and judge the answers."""

    def __init__(
        self,
        *,
        backend: GenerationBackend,
        item: Item,
        images: list[bytes],
        sampling: SamplingParams,
        seed_parts: tuple,
        heartbeat=None,
        before_round=None,
    ):
        from prm.core.answers import judge_response

        self.judge = judge_response
        self.backend = backend
        self.item = item
        self.images = images
        self.messages = solution_messages(
            question=item.question, options=item.options or [], num_images=len(images)
        )
        self.sampling = sampling
        self.seed_parts = seed_parts
        self.calls = 0
        self.heartbeat = heartbeat  # called after every round, so a long solution keeps its lease
        self.before_round = before_round  # called before every round: a cancel stops before the next rollouts

    def __call__(self, requests: list[tuple[Sequence[str], int]]) -> list[list[mc.Outcome]]:
        if self.before_round is not None:
            self.before_round()
        self.calls += 1
        generation_requests = []
        for prefix_steps, k in requests:
            seed = round_seed(self.sampling.seed, *self.seed_parts, len(prefix_steps), self.calls)
            sampling = replace(self.sampling, seed=seed)
            generation_requests.append(
                GenerationRequest(
                    messages=self.messages,
                    images=self.images,
                    continuation=join_steps(list(prefix_steps)),
                    n=k,
                    sampling=sampling,
                )
            )
        completions = self.backend.generate(generation_requests)
        if self.heartbeat is not None:
            self.heartbeat()
        options = self.item.options or None
        # A truncated rollout has no final answer: None, not judged (mc.py leaves it out of mc_i).
        return [
            [
                None
                if completion.truncated
                else self.judge(request.continuation + completion.text, self.item.answer, options=options)[1]
                for completion in texts
            ]
            for request, texts in zip(generation_requests, completions, strict=True)
        ]


def _check_not_cancelled(chunk: JobChunk) -> None:
    if job_is_cancelled(job_id=chunk.job_id):
        raise ChunkLost(f"job {chunk.job_id} was cancelled")


def run_mc_label(chunk: JobChunk) -> dict:
    params = chunk.job.params
    source = params["source"]
    backend = cached_backend(params["backend"])
    sampling = SamplingParams.from_dict(params.get("sampling"))
    solutions = list(
        Solution.objects.filter(
            pk__in=chunk.params.get("solution_ids", []), item__project_id=chunk.job.project_id
        )
        .select_related("item")
        .order_by("pk")
    )
    if not params.get("overwrite"):
        # A chunk stores all of its solutions' labels at once, so a solution with any label of this
        # source was estimated already (with early stop, the steps after mc = 0 stay unlabelled).
        labelled = set(
            AutoLabel.objects.filter(kind=AutoLabel.Kind.MC, source=source, step__solution__in=solutions)
            .values_list("step__solution_id", flat=True)
            .distinct()
        )
        solutions = [solution for solution in solutions if solution.pk not in labelled]
    counts = {"solutions": 0, "steps_labelled": 0, "rollouts": 0, "truncated": 0, "skipped_no_answer": 0}
    labels: list[AutoLabel] = []
    # The page moves per solution (interval 0), and every round of rollouts renews the lease.
    with ProgressReporter(chunk=chunk, interval=0) as reporter:
        for solution in solutions:
            _check_not_cancelled(chunk)
            steps = list(solution.steps.order_by("index"))
            if not solution.item.answer.strip() or not steps:
                counts["skipped_no_answer"] += 1
                continue
            oracle = SolutionOracle(
                backend=backend,
                item=solution.item,
                images=item_images(solution.item),
                sampling=sampling,
                seed_parts=(solution.pk,),
                heartbeat=reporter.flush,
                before_round=lambda: _check_not_cancelled(chunk),
            )
            result = mc.estimate(
                [step.text for step in steps],
                oracle,
                strategy=params["strategy"],
                k=params["k"],
                round_size=params.get("round_size", mc.DEFAULT_ROUND_SIZE),
                max_steps=params.get("max_steps", mc.DEFAULT_MAX_STEPS),
                early_stop=params.get("early_stop", False),
            )
            solution_labels = [
                label
                for step, estimate in zip(steps, result.per_step(), strict=True)
                if (label := mc_label(step, estimate, source=source, strategy=result.strategy)) is not None
            ]
            labels.extend(solution_labels)
            counts["solutions"] += 1
            counts["steps_labelled"] += len(solution_labels)
            counts["rollouts"] += result.rollouts
            counts["truncated"] += result.truncated
            reporter.add(1)
    with transaction.atomic():
        AutoLabel.objects.bulk_create(
            labels,
            update_conflicts=True,
            unique_fields=["step", "kind", "source"],
            update_fields=["score", "value", "num_correct", "num_total", "estimate"],
        )
        chunk_finish(chunk=chunk, counts=counts)
    return counts


STRATEGY_ESTIMATES = {
    "exhaustive": AutoLabel.Estimate.EXHAUSTIVE,
    "adaptive": AutoLabel.Estimate.ADAPTIVE,
    "binary_search": AutoLabel.Estimate.FIRST_ERROR,
}


def mc_label(step: Step, estimate: mc.StepEstimate, *, source: str, strategy: str) -> AutoLabel | None:
    """The AutoLabel of one step's estimate, or None for a step that was not estimated (after an early
    stop, or every rollout truncated). Only an exhaustive estimate carries a score (mc_i); the
    others keep their counts beside the value label they give ("any completion right?")."""
    kind = STRATEGY_ESTIMATES[strategy]
    label = AutoLabel(step=step, kind=AutoLabel.Kind.MC, source=source, estimate=kind)
    if estimate.sampled:
        label.num_correct, label.num_total = estimate.num_correct, estimate.num_total
        if mc.gives_estimates(strategy):
            label.score = estimate.mc  # value and advantage labels are derived from it when read
        else:
            label.value = mc.value_label(estimate)
        return label
    if estimate.inferred_positive is not None:
        # A binary-search step that was never sampled: its inferred sign, and no counts to pretend.
        label.value = mc.value_label(estimate)
        return label
    return None


def sample_key(policy: str, index: int) -> str:
    return f"{policy}-sample-{index}"


def run_sample_solutions(chunk: JobChunk) -> dict:
    from prm.core.answers import judge_response

    params = chunk.job.params
    policy, n = params["policy"], int(params["n"])
    backend = cached_backend(params["backend"])
    sampling = SamplingParams.from_dict(params.get("sampling"))
    max_steps = params.get("max_steps", settings.STEPMARK_MAX_STEPS)
    items = list(
        Item.objects.filter(
            pk__in=chunk.params.get("item_ids", []), project_id=chunk.job.project_id
        ).order_by("pk")
    )
    wanted = {sample_key(policy, i): i for i in range(n)}
    existing = set(Solution.objects.filter(item__in=items, key__in=wanted).values_list("item_id", "key"))
    requests, plans = [], []
    for item in items:
        missing = [key for key in wanted if (item.pk, key) not in existing]
        if not missing:
            continue
        images = item_images(item)
        seed = round_seed(sampling.seed, item.pk)
        requests.append(
            GenerationRequest(
                messages=solution_messages(
                    question=item.question, options=item.options or [], num_images=len(images)
                ),
                images=images,
                n=len(missing),
                sampling=replace(sampling, seed=seed),
            )
        )
        plans.append((item, missing))
    _check_not_cancelled(chunk)
    responses = backend.generate(requests) if requests else []
    counts = {"items": len(items), "solutions": 0, "correct": 0, "empty": 0, "truncated": 0}
    solutions, step_texts = [], []
    for (item, missing), completions in zip(plans, responses, strict=True):
        for key, completion in zip(missing, completions, strict=True):
            response = completion.text
            steps = split_steps(response, max_steps=max_steps)
            if not steps:
                counts["empty"] += 1  # nothing to label; a later run samples this key again
                continue
            if completion.truncated:
                # Cut by the token limit: kept for step labels, but its final answer is not judged.
                counts["truncated"] += 1
                answer, is_correct = None, None
            elif item.answer.strip():
                answer, is_correct = judge_response(response, item.answer, options=item.options or None)
            else:
                answer, is_correct = None, None
            solutions.append(
                Solution(
                    item=item,
                    key=key,
                    policy_model=policy,
                    response=response,
                    final_answer=answer or "",
                    is_correct=is_correct,
                    metadata={"job": chunk.job_id, "sampling": asdict(sampling), "truncated": completion.truncated},
                )
            )
            step_texts.append(steps)
            counts["solutions"] += 1
            counts["correct"] += int(bool(is_correct))
    with transaction.atomic():
        created = Solution.objects.bulk_create(solutions)
        Step.objects.bulk_create(
            [
                Step(solution=solution, index=i, text=text)
                for solution, texts in zip(created, step_texts, strict=True)
                for i, text in enumerate(texts)
            ]
        )
        chunk_finish(chunk=chunk, counts=counts)
    return counts
