"""The LLM-judge runner: one chat request per solution, verdicts stored only when the reply parses.

A chunk sends its solutions' requests concurrently (the server batches them). A transient error
(HTTP 5xx, 429, a dropped connection) is retried here a few times with backoff, then the chunk is
given back to Celery's own retries; a reply that does not parse (not JSON, too few or too many
verdicts, a label out of range) or a request the server refuses (HTTP 400: too long for its
context) skips that solution: counted by why and named in the job's counts, never stored in part.
Labels, counts and the solutions' priorities commit with the chunk, in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from django.db import transaction

from annotation.models import AutoLabel, ItemImage, Solution, Step
from prm.core.judge import JudgeReplyError, StepVerdict, judge_messages, parse_judge_reply, response_format
from workers.errors import PermanentJobError, TransientJobError
from workers.generation.base import GenerationRequest, SamplingParams
from workers.generation.openai_backend import OpenAIBackend, server_options
from workers.models import JobChunk
from workers.priority import solution_priority_update
from workers.services import ChunkLost, chunk_finish, chunk_heartbeat, job_is_cancelled

logger = logging.getLogger(__name__)

RETRIES = 3  # per request, after the first try
BACKOFF_SECONDS = (0.5, 1.0, 2.0)
# The server refused this one request (too long for its context, an image it cannot read): skip it.
REFUSED_STATUSES = ("HTTP 400", "HTTP 413", "HTTP 422")
SKIPPED_NAMED = 20  # skipped solutions named per chunk; the counts are always complete


@dataclass
class JudgeOutcome:
    solution: Solution
    verdicts: list[StepVerdict] | None
    skipped: str = ""  # malformed | step_count | out_of_range | refused
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0


def item_image_bytes(item_id: int) -> list[bytes]:
    images = []
    for link in ItemImage.objects.filter(item_id=item_id).select_related("image").order_by("position"):
        with link.image.file.open("rb") as handle:
            images.append(handle.read())
    return images


def _ask(client: OpenAIBackend, request: GenerationRequest) -> tuple[dict, int]:
    """The server's reply, retrying transient errors with backoff; (reply, retries used)."""
    for attempt in range(RETRIES + 1):
        try:
            return client.chat(request), attempt
        except TransientJobError:
            if attempt == RETRIES:
                raise
            time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
    raise AssertionError("unreachable")


def judge_solution(
    client: OpenAIBackend, *, solution: Solution, steps: list[Step], images: list[bytes], params: dict
) -> JudgeOutcome:
    item = solution.item
    request = GenerationRequest(
        messages=judge_messages(
            prompt=params["prompt"], question=item.question, steps=[s.text for s in steps], num_images=len(images)
        ),
        images=images,
        sampling=SamplingParams(
            temperature=params.get("temperature", 0.0), top_p=1.0, top_k=0, max_new_tokens=params.get("max_tokens", 2048)
        ),
        response_format=response_format(len(steps)),
    )
    try:
        reply, retries = _ask(client, request)
    except PermanentJobError as exc:
        if any(status in str(exc) for status in REFUSED_STATUSES):
            return JudgeOutcome(solution, None, skipped="refused", detail=str(exc))
        raise
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    outcome = JudgeOutcome(
        solution, None, prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0), retries=retries,
    )
    choices = reply.get("choices") or []
    text = ((choices[0].get("message") or {}).get("content") or "") if choices and isinstance(choices[0], dict) else ""
    try:
        outcome.verdicts = parse_judge_reply(text, num_steps=len(steps))
    except JudgeReplyError as exc:
        truncated = bool(choices) and choices[0].get("finish_reason") == "length"
        outcome.skipped, outcome.detail = exc.kind, str(exc) + (" (the reply hit max_tokens)" if truncated else "")
    return outcome


def run_judge_labels(chunk: JobChunk) -> dict:
    job = chunk.job
    params = job.params
    options = server_options({"server": params.get("server"), "timeout": 600.0})
    client = OpenAIBackend(**options, concurrency=int(params.get("concurrency", 8)))
    solutions = list(
        Solution.objects.filter(pk__in=chunk.params.get("solution_ids", []), item__project_id=job.project_id)
        .select_related("item")
        .order_by("pk")
    )
    steps_of: dict[int, list[Step]] = defaultdict(list)
    for step in Step.objects.filter(solution__in=solutions).order_by("solution_id", "index"):
        steps_of[step.solution_id].append(step)
    solutions = [solution for solution in solutions if steps_of[solution.pk]]
    images = {item_id: item_image_bytes(item_id) for item_id in {s.item_id for s in solutions}}

    outcomes: list[JudgeOutcome] = []
    with ThreadPoolExecutor(max_workers=max(1, min(client.concurrency, len(solutions) or 1))) as pool:
        futures = [
            pool.submit(judge_solution, client, solution=s, steps=steps_of[s.pk], images=images[s.item_id], params=params)
            for s in solutions
        ]
        try:
            for future in as_completed(futures):
                outcomes.append(future.result())
                if job_is_cancelled(job_id=job.pk):
                    raise ChunkLost(f"job {job.pk} was cancelled")
                chunk_heartbeat(chunk=chunk)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    labels: list[AutoLabel] = []
    skipped: Counter[str] = Counter()
    named: list[str] = []
    for outcome in sorted(outcomes, key=lambda o: o.solution.pk):
        if outcome.verdicts is None:
            skipped[outcome.skipped] += 1
            if len(named) < SKIPPED_NAMED:
                named.append(f"{outcome.solution.item.external_id}/{outcome.solution.key}: {outcome.detail}")
            continue
        for step, verdict in zip(steps_of[outcome.solution.pk], outcome.verdicts, strict=True):
            labels.append(AutoLabel(
                step=step, kind=AutoLabel.Kind.JUDGE, source=params["source"], value=verdict.value,
                reason=verdict.reason, prompt_version=params["prompt_version"],
            ))
    counts = {
        "solutions": len(outcomes) - sum(skipped.values()),
        "steps_labelled": len(labels),
        "skipped": sum(skipped.values()),
        **{f"skipped_{kind}": n for kind, n in sorted(skipped.items())},
        "prompt_tokens": sum(o.prompt_tokens for o in outcomes),
        "completion_tokens": sum(o.completion_tokens for o in outcomes),
        "retries": sum(o.retries for o in outcomes),
    }
    if named:
        counts["skipped_solutions"] = named
    with transaction.atomic():
        AutoLabel.objects.bulk_create(
            labels, update_conflicts=True, unique_fields=["step", "kind", "source"],
            update_fields=["value", "reason", "prompt_version", "score"],
        )
        chunk_finish(chunk=chunk, counts=counts)
        solution_priority_update(solution_ids=[solution.pk for solution in solutions])
    logger.info("chunk %s: %s steps judged by %s, %s solutions skipped", chunk.pk, len(labels), params["source"], counts["skipped"])
    return counts
