"""Scoring with a project's PRM: step scores of one solution, and ranking many responses (Best-of-N).

The model is the project's live version unless a version is named. Loaded scorers are kept per
process (a few, least recently used), since loading a model costs far more than one forward pass.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image as PILImage

from annotation.models import Item, Project
from annotation.services.images import ImageRejected, image_check
from annotation.steps import split_steps
from prm.core.metrics import AGGREGATIONS
from prm.evaluation import item_images
from prm.models import PRMVersion

if TYPE_CHECKING:
    from prm.core.scoring import PRMScorer

MAX_CACHED_SCORERS = 2
_scorers: OrderedDict[tuple[str, str], PRMScorer] = OrderedDict()
_scorers_lock = threading.Lock()


class InferenceError(ValueError):
    """A scoring request that cannot be served; the message says why (the API answers 400)."""


class NoVersion(InferenceError):
    pass


@dataclass(frozen=True)
class ScoredResponse:
    index: int  # position in the request
    steps: list[str]
    step_scores: list[float]
    score: float


def scorer_for_directory(directory: str | Path, *, aggregation: str = "mean") -> PRMScorer:
    if aggregation not in AGGREGATIONS:
        raise InferenceError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
    key = (str(Path(directory).resolve()), aggregation)
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            if not Path(directory).is_dir():
                raise InferenceError(f"model folder {directory} does not exist")
            from prm.core.scoring import PRMScorer  # torch loads on first use, not at start-up

            scorer = PRMScorer(directory, aggregation=aggregation)
            _scorers[key] = scorer
            while len(_scorers) > MAX_CACHED_SCORERS:
                _scorers.popitem(last=False)
        _scorers.move_to_end(key)
        return scorer


def version_for(*, project: Project, name: str | None = None) -> PRMVersion:
    """The named version of `project`, else its live one."""
    versions = PRMVersion.objects.filter(project=project)
    version = versions.filter(name=name).first() if name else versions.filter(status=PRMVersion.Status.LIVE).first()
    if version is None:
        raise NoVersion(f"project {project.name} has no PRM version named {name!r}" if name
                        else f"project {project.name} has no live PRM version")
    return version


def decode_image(data: str) -> PILImage.Image:
    """A base64 image (optionally a data: URL), checked against the upload limits."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InferenceError(f"image is not valid base64: {exc}") from None
    try:
        image_check(data=raw)
    except ImageRejected as exc:
        raise InferenceError(f"image rejected: {exc}") from None
    return PILImage.open(io.BytesIO(raw)).convert("RGB")


def request_images(*, project: Project, images: Sequence[str] = (), item_id: int | None = None) -> list[PILImage.Image]:
    """Images of a request: base64 strings, or the images of one of the project's items."""
    if item_id is not None:
        item = Item.objects.filter(project=project, pk=item_id).first()
        if item is None:
            raise InferenceError(f"no item {item_id} in project {project.name}")
        return item_images(list(item.item_images.order_by("position").values_list("image__file", flat=True)))
    return [decode_image(data) for data in images]


def as_steps(response: str | Sequence[str]) -> list[str]:
    """A response given as text is split into steps as imports split it; a list is taken as steps."""
    steps = split_steps(response) if isinstance(response, str) else [str(step) for step in response]
    steps = [step for step in steps if step.strip()]
    if not steps:
        raise InferenceError("a response has no steps")
    return steps


def score_solution(*, scorer: PRMScorer, question: str, steps: Sequence[str],
                   images: Sequence[PILImage.Image] = ()) -> ScoredResponse:
    step_scores = scorer.score_steps(question=question, steps=list(steps), images=images)
    return ScoredResponse(0, list(steps), step_scores, _aggregate(scorer, step_scores))


def rank_responses(*, scorer: PRMScorer, question: str, responses: Sequence[str | Sequence[str]],
                   images: Sequence[PILImage.Image] = ()) -> list[ScoredResponse]:
    """Every response scored in batches (one pass per batch), best first; ties keep request order."""
    if not responses:
        raise InferenceError("no responses to rank")
    solutions = [as_steps(response) for response in responses]
    batch = scorer.score_solutions(question=question, solutions=solutions, images=images)
    scored = [
        ScoredResponse(index, steps, step_scores, _aggregate(scorer, step_scores))
        for index, (steps, step_scores) in enumerate(zip(solutions, batch, strict=True))
    ]
    return sorted(scored, key=lambda response: (-response.score, response.index))


def _aggregate(scorer: PRMScorer, step_scores: list[float]) -> float:
    from prm.core.metrics import aggregate_step_scores

    return aggregate_step_scores(step_scores, method=scorer.aggregation)
