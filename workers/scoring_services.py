"""The PRM scoring API's work, done by a gpu worker: the web process never loads a model.

The web process checks a request as the API always has (`scoring_request_prepare`: the version,
the images, the question; an InferenceError is a 400 before anything is saved), saves it as a
ScoringRequest and sends `workers.tasks.scoring_request_run` to the `gpu` queue
(`scoring_request_start`), then reads the row until the worker has finished it
(`scoring_request_wait`). There is no Celery result backend: the outcome is the row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from annotation.models import Item, Project
from prm.inference import (
    InferenceError,
    as_steps,
    decode_image,
    rank_responses,
    request_images,
    score_solution,
    scorer_for_directory,
    version_for,
)
from workers.models import ScoringRequest

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.05
# A request claimed longer ago than this is presumed lost with its worker and may be claimed again.
SCORING_LEASE = timedelta(minutes=10)


class ScoringQueueUnavailable(RuntimeError):
    """The broker could not be reached, so the request was not sent (it is marked failed)."""

    def __init__(self, *, request_id: int):
        self.request_id = request_id
        super().__init__(
            f"The job queue is unavailable, so scoring request #{request_id} could not be sent to a worker. "
            "Try again once the queue is back."
        )


def scoring_request_prepare(
    *,
    project: Project,
    kind: str,
    version_name: str | None = None,
    aggregation: str = "mean",
    question: str | None = None,
    images: Sequence[str] = (),
    item_id: int | None = None,
    steps: Sequence[str] = (),
    responses: Sequence[object] = (),
) -> dict:
    """The payload a worker needs, checked here so that a bad request is refused before it is queued.

    Raises InferenceError (no such version, an unknown item, a bad image, a response with no steps).
    """
    version = version_for(project=project, name=version_name)
    if item_id is not None:
        item = Item.objects.filter(project=project, pk=item_id).first()
        if item is None:
            raise InferenceError(f"no item {item_id} in project {project.name}")
        question = question or item.question
        images = ()
    else:
        for data in images:
            decode_image(data)  # a bad image is a 400 now, not a failed request later
    payload = {
        "version": version.name,
        "directory": version.directory,
        "aggregation": aggregation,
        "question": question,
        "images": list(images),
        "item": item_id,
    }
    if kind == ScoringRequest.Kind.SCORE:
        payload["steps"] = list(steps)
    elif kind == ScoringRequest.Kind.RANK:
        if not responses:
            raise InferenceError("no responses to rank")
        for response in responses:
            as_steps(response)
        payload["responses"] = list(responses)
    else:
        raise ValueError(f"unknown scoring request kind {kind!r}")
    return payload


def scoring_request_start(*, project: Project, kind: str, payload: dict, user=None) -> ScoringRequest:
    """Save the request and send it to the gpu queue.

    Call it outside a transaction (the worker must see the row). Raises ScoringQueueUnavailable when
    the broker cannot be reached; the row is then failed, so nobody waits for it.
    """
    from workers.tasks import scoring_request_run

    scoring_request = ScoringRequest.objects.create(
        project=project, kind=kind, payload=payload, requested_by=user if getattr(user, "pk", None) else None
    )
    try:
        scoring_request_run.apply_async(args=[scoring_request.pk], queue="gpu")
    except BrokerUnreachable as exc:
        logger.warning("scoring request %s: broker unreachable: %s", scoring_request.pk, exc)
        error = ScoringQueueUnavailable(request_id=scoring_request.pk)
        ScoringRequest.objects.filter(pk=scoring_request.pk, status=ScoringRequest.Status.PENDING).update(
            status=ScoringRequest.Status.FAILED, error=str(error), finished_at=timezone.now()
        )
        raise error from exc
    return scoring_request


def scoring_request_wait(*, scoring_request: ScoringRequest, seconds: float | None = None) -> ScoringRequest:
    """The row, re-read every POLL_INTERVAL_SECONDS until it is finished or `seconds` have passed
    (settings.STEPMARK_SCORING_WAIT_SECONDS by default)."""
    if seconds is None:
        seconds = settings.STEPMARK_SCORING_WAIT_SECONDS
    deadline = time.monotonic() + seconds
    while True:
        row = ScoringRequest.objects.get(pk=scoring_request.pk)
        if row.is_finished or time.monotonic() >= deadline:
            return row
        time.sleep(min(POLL_INTERVAL_SECONDS, max(0.0, deadline - time.monotonic())))


def scoring_requests_prune() -> int:
    """Delete the scoring requests created more than STEPMARK_SCORING_KEEP_SECONDS ago, whatever their
    state: their caller has the answer or gave up long ago, and a late task finds no row and does
    nothing. Beat runs this hourly; returns the rows deleted."""
    cutoff = timezone.now() - timedelta(seconds=settings.STEPMARK_SCORING_KEEP_SECONDS)
    deleted, _ = ScoringRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def scoring_request_claim(*, request_id: int) -> ScoringRequest | None:
    """Pending → running by a conditional UPDATE (also a running one whose worker is presumed lost);
    None when another worker has it or it is finished."""
    now = timezone.now()
    claimed = (
        ScoringRequest.objects.filter(pk=request_id)
        .filter(
            Q(status=ScoringRequest.Status.PENDING)
            | Q(status=ScoringRequest.Status.RUNNING, started_at__lt=now - SCORING_LEASE)
        )
        .update(status=ScoringRequest.Status.RUNNING, started_at=now)
    )
    return ScoringRequest.objects.get(pk=request_id) if claimed else None


def scoring_request_serve(*, request_id: int) -> str:
    """A worker's part: claim the request, run the model, store the API's response body or the error."""
    scoring_request = scoring_request_claim(request_id=request_id)
    if scoring_request is None:
        return "not claimed (done or taken)"
    mine = ScoringRequest.objects.filter(
        pk=request_id, status=ScoringRequest.Status.RUNNING, started_at=scoring_request.started_at
    )
    try:
        result = _run(scoring_request)
    except InferenceError as exc:
        mine.update(status=ScoringRequest.Status.FAILED, error=str(exc), bad_request=True, finished_at=timezone.now())
        return "failed"
    except Exception as exc:
        logger.exception("scoring request %s failed", request_id)
        mine.update(status=ScoringRequest.Status.FAILED, error=f"{type(exc).__name__}: {exc}",
                    finished_at=timezone.now())
        return "failed"
    mine.update(status=ScoringRequest.Status.DONE, result=result, finished_at=timezone.now())
    return "done"


def _run(scoring_request: ScoringRequest) -> dict:
    payload = scoring_request.payload
    scorer = scorer_for_directory(payload["directory"], aggregation=payload["aggregation"])  # cached per process
    images = request_images(project=scoring_request.project, images=payload["images"], item_id=payload["item"])
    question = payload["question"]
    if scoring_request.kind == ScoringRequest.Kind.SCORE:
        result = score_solution(scorer=scorer, question=question, steps=payload["steps"], images=images)
        return {"version": payload["version"], "steps": result.steps, "step_scores": result.step_scores,
                "response_score": result.score, "aggregation": scorer.aggregation}
    ranked = rank_responses(scorer=scorer, question=question, responses=payload["responses"], images=images)
    return {
        "version": payload["version"], "aggregation": scorer.aggregation,
        "ranking": [{"index": r.index, "score": r.score, "steps": r.steps, "step_scores": r.step_scores}
                    for r in ranked],
    }
