"""Agreement of prm.core.answers.judge_response with MATH-V's published right/wrong judgements.

    .venv/bin/python benchmarks/answer_agreement.py [--data ../shared/data/math-v-testmini]

Judges the 1,520 responses in responses/*.jsonl (five models x 304 testmini questions)
against testmini.jsonl's answer and options, compares with each record's published
`correct` flag and prints the agreement overall and per model (target >= 97%), then every
disagreement with a one-line category of why. The published flags come from MATH-V's own
script, which reads its own `model_answer` extraction: a second opinion, not ground truth.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from prm.core.answers import answers_equivalent, judge_response  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "math-v-testmini"
TARGET_AGREEMENT = 0.97


@dataclass(frozen=True)
class Judgement:
    id: str
    model: str
    extracted: str | None
    reference: str
    options: list[str]
    ours: bool
    published: bool
    published_answer: str

    @property
    def agrees(self) -> bool:
        return self.ours == self.published


def judge_all(data_dir: Path) -> list[Judgement]:
    """Our verdict beside the published one for every response under data_dir/responses."""
    questions = {}
    with open(data_dir / "testmini.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            questions[str(record["id"])] = record
    judgements = []
    for path in sorted((data_dir / "responses").glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                question = questions[str(record["id"])]
                options = list(question["options"] or [])
                extracted, ours = judge_response(record["response"], str(question["answer"]), options=options)
                judgements.append(
                    Judgement(
                        id=str(record["id"]),
                        model=record["model"],
                        extracted=extracted,
                        reference=str(question["answer"]),
                        options=options,
                        ours=ours,
                        published=bool(record["correct"]),
                        published_answer=str(record.get("model_answer") or ""),
                    )
                )
    return judgements


def _squash(text: str | None) -> str:
    return re.sub(r"[\s$]", "", (text or "").lower())


_LETTER_MARKER = re.compile(r"^(?:\\text(?:bf)?\s*\{\s*)?\(?([A-Z])\)?(?:[.:}\s~\\]|$)")


def disagreement_category(judgement: Judgement) -> str:
    """Why we differ, told from which step differs: the extraction or the comparison."""
    published_answer = judgement.published_answer
    if judgement.published and not judgement.ours:
        return f"our error or a stricter rule: published read {published_answer[:40]!r}"
    # MATH-V's comparison lower-cases and strips spaces; judge its extraction with our rules.
    same_answer = answers_equivalent(published_answer, judgement.reference, options=judgement.options)
    extracted = judgement.extracted or ""
    if not same_answer:
        if len(published_answer) > 40:
            return f"published extraction took a sentence, not the answer ({published_answer[:30]!r}...)"
        if judgement.options and _LETTER_MARKER.match(extracted.strip()):
            return f"published extraction glued the option letter to its value ({published_answer!r})"
        return f"published extraction kept units or LaTeX residue ({published_answer!r})"
    if judgement.options and judgement.options[0].strip() != "A":
        return "option text -> letter: the published judge compares the value with the raw LaTeX option text"
    return f"published comparison stricter on the same answer ({published_answer!r})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not (args.data / "testmini.jsonl").exists():
        print(f"no MATH-V testmini data at {args.data}", file=sys.stderr)
        return 2

    judgements = judge_all(args.data)
    agreed = sum(judgement.agrees for judgement in judgements)
    agreement = agreed / len(judgements)
    print(f"agreement: {agreed}/{len(judgements)} = {agreement:.2%} (target {TARGET_AGREEMENT:.0%})")
    print(
        f"accuracy: ours {sum(j.ours for j in judgements)}, published {sum(j.published for j in judgements)}"
    )

    by_model: dict[str, list[Judgement]] = defaultdict(list)
    for judgement in judgements:
        by_model[judgement.model].append(judgement)
    for model, rows in sorted(by_model.items()):
        model_agreed = sum(row.agrees for row in rows)
        print(f"  {model:32s} {model_agreed}/{len(rows)} = {model_agreed / len(rows):.2%}")

    disagreements = [judgement for judgement in judgements if not judgement.agrees]
    categories = Counter()
    print(f"\n{len(disagreements)} disagreements (id | model | extracted | reference | published | why):")
    for judgement in disagreements:
        category = disagreement_category(judgement)
        categories[category.split(" (")[0].split(":")[0]] += 1
        reference = judgement.reference
        if judgement.options and reference in "ABCDEFGH" and len(reference) == 1:
            reference += f" = {judgement.options[ord(reference) - ord('A')]!r}"
        extracted = (judgement.extracted or "")[:50]
        print(
            f"  {judgement.id:>5} | {judgement.model:26s} | {extracted!r} | {reference} | "
            f"published={judgement.published} | {category}"
        )
    print("\ncategories:")
    for category, count in categories.most_common():
        print(f"  {count:4d}  {category}")
    return 0 if agreement >= TARGET_AGREEMENT else 1


if __name__ == "__main__":
    sys.exit(main())
