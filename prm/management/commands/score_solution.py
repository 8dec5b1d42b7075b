"""manage.py score_solution (--project NAME | --model-dir DIR) --question Q --steps-file F [--image IMG]"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from prm.inference import score_solution
from prm.management.commands._scoring_args import add_model_arguments, load_images, load_scorer, read_steps


class Command(BaseCommand):
    help = "Print a PRM's score of every step of one solution, and the response score."

    def add_arguments(self, parser):
        add_model_arguments(parser)
        parser.add_argument("--steps-file", required=True, type=Path,
                            help="The solution: a JSON list of steps, or text with steps separated by blank lines.")

    def handle(self, *args, **options):
        scorer, model = load_scorer(options)
        result = score_solution(scorer=scorer, question=options["question"], steps=read_steps(options["steps_file"]),
                                images=load_images(options["image"]))
        if options["json"]:
            self.stdout.write(json.dumps({"model": model, "steps": result.steps, "step_scores": result.step_scores,
                                          "response_score": result.score, "aggregation": scorer.aggregation}))
            return
        self.stdout.write(f"model: {model}")
        for index, (step, score) in enumerate(zip(result.steps, result.step_scores, strict=True)):
            self.stdout.write(f"{index:>3}  {score:.4f}  {step.splitlines()[0][:100]}")
        self.stdout.write(f"response score ({scorer.aggregation}): {result.score:.4f}")
