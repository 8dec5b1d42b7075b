"""manage.py rank_solutions (--project NAME | --model-dir DIR) --question Q --steps-file F1 --steps-file F2 ..."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from prm.inference import InferenceError, rank_responses
from prm.management.commands._scoring_args import add_model_arguments, load_images, load_scorer, read_steps


def _responses_file(path: Path) -> list:
    """A JSON list (or JSON lines) of responses, each a text or a list of steps."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"{path}: {exc}") from exc
    return data


class Command(BaseCommand):
    help = "Rank several solutions to one question by PRM response score (Best-of-N selection)."

    def add_arguments(self, parser):
        add_model_arguments(parser)
        parser.add_argument("--steps-file", action="append", type=Path, default=[],
                            help="One solution per file (JSON list of steps, or blank-line separated text); repeat.")
        parser.add_argument("--responses-file", type=Path, help="A JSON list or JSON lines of responses.")

    def handle(self, *args, **options):
        responses = [read_steps(path) for path in options["steps_file"]]
        labels = [str(path) for path in options["steps_file"]]
        if options["responses_file"]:
            extra = _responses_file(options["responses_file"])
            responses += extra
            labels += [f"{options['responses_file']}[{i}]" for i in range(len(extra))]
        if len(responses) < 1:
            raise CommandError("give solutions with --steps-file (repeat it) or --responses-file")
        scorer, model = load_scorer(options)
        try:
            ranked = rank_responses(scorer=scorer, question=options["question"], responses=responses,
                                    images=load_images(options["image"]))
        except InferenceError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps({"model": model, "aggregation": scorer.aggregation, "ranking": [
                {"index": r.index, "source": labels[r.index], "score": r.score, "step_scores": r.step_scores}
                for r in ranked]}))
            return
        self.stdout.write(f"model: {model}  ({scorer.aggregation} of step scores)")
        for rank, response in enumerate(ranked, start=1):
            steps = " ".join(f"{s:.2f}" for s in response.step_scores)
            self.stdout.write(f"{rank:>3}. {response.score:.4f}  {labels[response.index]}  [{steps}]")
