"""Arguments shared by score_solution and rank_solutions: which model, the image, the question."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError
from PIL import Image as PILImage

from annotation.models import Project
from annotation.steps import split_steps
from prm.core.metrics import AGGREGATIONS
from prm.core.scoring import PRMScorer
from prm.inference import InferenceError, scorer_for_directory, version_for


def add_model_arguments(parser) -> None:
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--project", help="Project name: score with its live PRM (or --version).")
    model.add_argument("--model-dir", type=Path, help="A PRM model folder to score with.")
    parser.add_argument("--prm-version", dest="prm_version", help="With --project: a version name instead of the live one.")
    parser.add_argument("--image", action="append", type=Path, default=[], help="Image file (repeat for several).")
    parser.add_argument("--question", required=True)
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="mean", help="Response score from step scores.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")


def load_scorer(options: dict) -> tuple[PRMScorer, str]:
    """(scorer, what it is) from --project/--version or --model-dir."""
    try:
        if options["model_dir"]:
            return scorer_for_directory(options["model_dir"], aggregation=options["aggregation"]), str(options["model_dir"])
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"no project named {options['project']!r}")
        version = version_for(project=project, name=options["prm_version"])
        return scorer_for_directory(version.directory, aggregation=options["aggregation"]), version.name
    except InferenceError as exc:
        raise CommandError(str(exc)) from exc


def load_images(paths: list[Path]) -> list[PILImage.Image]:
    images = []
    for path in paths:
        try:
            with PILImage.open(path) as image:
                images.append(image.convert("RGB"))
        except OSError as exc:
            raise CommandError(f"{path}: not a readable image ({exc})") from exc
    return images


def read_steps(path: Path) -> list[str]:
    """Steps from a file: a JSON list of strings, else text split into steps at blank lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{path}: {exc}") from exc
    if path.suffix == ".json":
        try:
            steps = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(steps, list) or not all(isinstance(step, str) for step in steps):
            raise CommandError(f"{path}: expected a JSON list of step strings")
    else:
        steps = split_steps(text)
    steps = [step for step in steps if step.strip()]
    if not steps:
        raise CommandError(f"{path}: no steps")
    return steps
