"""Best-of-N selection on MATH-V testmini: five real solutions per question with published outcomes.

    .venv/bin/python benchmarks/best_of_n.py [--model-dir PRM_FOLDER] [--data ../shared/data/math-v-testmini]
                                             [--aggregation mean|min|last|product] [--limit N] [--device cuda]

Every question of testmini.jsonl has one response from each of five models (responses/*.jsonl,
with MATH-V's own right/wrong flag). The PRM scores all five (one batch per question; response
score = the aggregation of step scores, steps split as imports split them) and picks the highest.
Printed beside it: pass@1 (mean correctness), majority vote over the final answers
(prm.core.answers.extract_final_answer, mapped to option letters and normalised) and oracle pass@5;
overall and per subject. Without --model-dir a tiny Qwen2-VL with RANDOM weights is built locally:
its column is a chance baseline, and the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")

import django  # noqa: E402

django.setup()

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from annotation.steps import split_steps  # noqa: E402
from prm.core.answers import extract_final_answer  # noqa: E402
from prm.core.metrics import Candidate, best_of_n  # noqa: E402
from prm.core.scoring import AGGREGATIONS, PRMScorer  # noqa: E402
from prm.core.tiny_models import build_tiny_backbone  # noqa: E402
from prm.evaluation import vote_key  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "math-v-testmini"


def load_questions(data_dir: Path) -> list[dict]:
    """Questions with their responses (model, response, correct), in testmini order."""
    questions = {}
    with open(data_dir / "testmini.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            record["responses"] = []
            questions[str(record["id"])] = record
    for path in sorted((data_dir / "responses").glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                questions[str(record["id"])]["responses"].append(
                    {"model": path.stem, "response": record["response"], "correct": bool(record["correct"])}
                )
    return list(questions.values())


def prompt_text(question: dict) -> str:
    """The question as the PRM reads it: image markers removed (images go in separately), options listed."""
    text = question["question"].replace("<image1>", "").strip()
    options = question.get("options") or []
    if options:
        text += "\n\nChoices: " + " ".join(f"({chr(65 + i)}) {option}" for i, option in enumerate(options))
    return text


def evaluate(*, scorer: PRMScorer, questions: list[dict], data_dir: Path) -> dict[str, list[list[Candidate]]]:
    """Candidates per question, grouped by subject (and "all")."""
    groups: dict[str, list[list[Candidate]]] = defaultdict(list)
    for question in questions:
        responses = question["responses"]
        with Image.open(data_dir / question["image"]) as image:
            images = [image.convert("RGB")]
        solutions = [split_steps(r["response"]) or [r["response"]] for r in responses]
        scores = scorer.score_responses(question=prompt_text(question), solutions=solutions, images=images)
        candidates = [
            Candidate(final_answer=vote_key(extract_final_answer(r["response"]), question.get("options")),
                      is_correct=r["correct"], score=score)
            for r, score in zip(responses, scores, strict=True)
        ]
        groups["all"].append(candidates)
        groups[question.get("subject") or "unknown"].append(candidates)
    return groups


def print_table(groups: dict[str, list[list[Candidate]]], *, n: int) -> None:
    header = f"{'subject':<26} {'questions':>9} {'PRM pick':>9} {'pass@1':>8} {'majority':>9} {f'oracle@{n}':>9}"
    print(header)
    print("-" * len(header))
    for name in ["all"] + sorted(k for k in groups if k != "all"):
        report = best_of_n(groups[name])
        print(f"{name:<26} {report.num_questions:>9} {report.prm_accuracy:>9.1%} {report.pass_at_1:>8.1%} "
              f"{report.majority_vote:>9.1%} {report.oracle:>9.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="PRM model folder (default: a tiny random-weights model).")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="mean")
    parser.add_argument("--limit", type=int, help="Only the first N questions.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if not (args.data / "testmini.jsonl").exists():
        sys.exit(f"no MATH-V testmini at {args.data}")
    questions = load_questions(args.data)[: args.limit]
    n = max(len(q["responses"]) for q in questions)

    with tempfile.TemporaryDirectory() as scratch:
        if args.model_dir is None:
            model_dir = build_tiny_backbone("qwen2_vl", Path(scratch) / "tiny", seed=0)
            print("PRM: a tiny Qwen2-VL with RANDOM weights built locally (no trained PRM given):")
            print("     its 'PRM pick' column is a chance baseline, not a measurement of a trained PRM.")
        else:
            model_dir = args.model_dir
            print(f"PRM: {model_dir}")
        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        scorer = PRMScorer(model_dir, device=args.device, dtype=dtype, aggregation=args.aggregation,
                           batch_size=args.batch_size)
        started = time.perf_counter()
        groups = evaluate(scorer=scorer, questions=questions, data_dir=args.data)
        elapsed = time.perf_counter() - started
    print(f"MATH-V testmini: {len(questions)} questions x {n} solutions (published outcomes); "
          f"response score = {args.aggregation} of step scores; {elapsed:.1f}s on {args.device}\n")
    print_table(groups, n=n)


if __name__ == "__main__":
    main()
