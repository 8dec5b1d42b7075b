"""Monte Carlo strategies compared on the same solutions and the same random draws.

    .venv/bin/python benchmarks/mc_strategies.py [--solutions 2000] [--positive-rates uniform|grid16]
                                                 [--real-solutions 4] [--real-max-new-tokens 8]

Part 1 is a SIMULATED policy, not a model: every step prefix has a known success rate and a fixed
stream of draws, one per (solution, step, draw index), so every strategy reads the same
completions and differs only in which it asks for. Its solutions follow VisualPRM400K's shape:
3-8 steps (5.5 on average), about 17% of solutions with an error from which every step has
success rate 0 (about 10% negative steps), every other step a rate spread over (0, 1] (uniform,
or k/16 for k in 1..16 with --positive-rates grid16). Token cost is MODELLED: a completion of the
prefix through step i generates the remaining steps' lengths (20-80 tokens each, drawn per step)
plus 10 tokens of final answer. Wall time there is bookkeeping only; on a GPU it follows tokens.

Part 2 runs the real tiny model end to end (prm.core.tiny_models.build_tiny_qwen2_vl, random weights,
through the transformers back end and prm.core.answers.judge_response) on a handful of solutions, with
k = 4 by default (CPU generate). It checks the plumbing only: random weights never answer right, so
every step is negative except the last, whose prefix already holds the right \\boxed{} answer; that
pattern (bad steps, then a good last one) is not monotone, so first-error search disagrees there. Each draw is its own generate call, seeded
per (solution, step, draw), so all strategies see the same completions there too.

Targets (from the issue): adaptive >= 4x fewer completions than exhaustive with identical value
labels; first-error search >= 8x fewer with >= 95% agreement.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from prm.core import mc  # noqa: E402

K = 16
ANSWER_TOKENS = 10
ERROR_RATE = 0.17  # solutions with an error; with the first error uniform over 3-8 steps: ~10% negative steps
STRATEGIES = [  # (name printed, strategy, round size)
    ("exhaustive", "exhaustive", 1),
    ("adaptive, rounds of 4", "adaptive", 4),
    ("adaptive, rounds of 1", "adaptive", 1),
    ("first-error search", "binary_search", 1),
]
TARGETS = {"adaptive, rounds of 1": (4.0, 1.0), "first-error search": (8.0, 0.95)}


@dataclass(frozen=True)
class SimulatedSolution:
    rates: list[float]  # true success rate of each step's prefix
    lengths: list[int]  # tokens of each step


def visualprm_shaped_solutions(
    count: int, *, seed: int = 0, positive_rates: str = "uniform", error_rate: float = ERROR_RATE
) -> list[SimulatedSolution]:
    rng = random.Random(seed)
    solutions = []
    for _ in range(count):
        length = rng.randint(3, 8)
        first_error = rng.randrange(length) if rng.random() < error_rate else length
        rates = []
        for index in range(length):
            if index >= first_error:
                rates.append(0.0)
            elif positive_rates == "grid16":
                rates.append(rng.randint(1, K) / K)
            else:
                rates.append(1.0 - rng.random())  # uniform on (0, 1]
        solutions.append(SimulatedSolution(rates=rates, lengths=[rng.randint(20, 80) for _ in range(length)]))
    return solutions


def draw_stream(seed: int, solution: int, step: int, length: int = K) -> list[float]:
    """The uniforms of one prefix's draws: the same for every strategy that asks for them."""
    rng = random.Random(f"{seed}:{solution}:{step}")  # draw j is the j-th value of this stream
    return [rng.random() for _ in range(length)]


@dataclass
class Cost:
    completions: int = 0
    tokens: int = 0
    calls: int = 0


@dataclass
class SimulatedPolicy:
    """The batched oracle of one solution: draw j of prefix i is right iff u[i][j] < rate[i]."""

    solution: SimulatedSolution
    streams: list[list[float]]
    cost: Cost
    used: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.used = [0] * len(self.solution.rates)

    def __call__(self, requests: list[tuple[Sequence[str], int]]) -> list[list[bool]]:
        self.cost.calls += 1
        results = []
        for prefix, k in requests:
            step = len(prefix) - 1
            start, self.used[step] = self.used[step], self.used[step] + k
            if self.used[step] > len(self.streams[step]):
                raise RuntimeError(f"step {step} asked for more than {len(self.streams[step])} draws")
            results.append([u < self.solution.rates[step] for u in self.streams[step][start : start + k]])
            self.cost.completions += k
            self.cost.tokens += k * (sum(self.solution.lengths[step + 1 :]) + ANSWER_TOKENS)
        return results


@dataclass
class Row:
    name: str
    cost: Cost
    seconds: float
    agreeing: int
    steps: int
    labels: list[list[int | None]]


def run_strategies(solutions, *, streams, oracle_for, steps_of, k: int = K) -> list[Row]:
    """Every strategy over every solution; agreement is per step, with exhaustive's value labels."""
    rows: list[Row] = []
    for name, strategy, round_size in STRATEGIES:
        cost = Cost()
        labels = []
        started = time.perf_counter()
        for number, solution in enumerate(solutions):
            result = mc.estimate(
                steps_of(solution),
                oracle_for(number, solution, streams[number], cost),
                strategy=strategy,
                k=k,
                round_size=round_size,
            )
            labels.append(mc.value_labels(result.per_step()))
        seconds = time.perf_counter() - started
        reference = rows[0].labels if rows else labels
        agreeing = sum(
            a == b
            for ours, theirs in zip(labels, reference, strict=True)
            for a, b in zip(ours, theirs, strict=True)
        )
        rows.append(Row(name, cost, seconds, agreeing, sum(len(x) for x in labels), labels))
    return rows


def print_table(rows: list[Row], *, targets: bool) -> None:
    full = rows[0].cost
    print(
        f"{'strategy':<24}{'completions':>12}{'x fewer':>9}{'tokens':>12}{'x fewer':>9}"
        f"{'rounds':>8}{'wall s':>9}{'agree':>8}  target"
    )
    for row in rows:
        ratio = full.completions / max(1, row.cost.completions)
        token_ratio = full.tokens / max(1, row.cost.tokens)
        agreement = row.agreeing / row.steps
        verdict = ""
        if targets and row.name in TARGETS:
            want_ratio, want_agreement = TARGETS[row.name]
            met = ratio >= want_ratio and agreement >= want_agreement
            verdict = f"{'MET' if met else 'NOT MET'} (>= {want_ratio:g}x, agreement >= {want_agreement:.0%})"
        print(
            f"{row.name:<24}{row.cost.completions:>12,}{ratio:>9.2f}{row.cost.tokens:>12,}{token_ratio:>9.2f}"
            f"{row.cost.calls:>8,}{row.seconds:>9.2f}{agreement:>8.2%}  {verdict}"
        )


def expected_adaptive_draws(solutions: list[SimulatedSolution]) -> float:
    """sum over steps of E[min(K, first right draw)] = (1 - (1 - p)^K) / p, or K when p = 0."""
    return sum((1 - (1 - p) ** K) / p if p > 0 else K for s in solutions for p in s.rates)


def simulated(args) -> None:
    solutions = visualprm_shaped_solutions(
        args.solutions, seed=args.seed, positive_rates=args.positive_rates, error_rate=args.error_rate
    )
    streams = [[draw_stream(args.seed, n, i) for i in range(len(s.rates))] for n, s in enumerate(solutions)]
    steps = sum(len(s.rates) for s in solutions)
    negatives = sum(p == 0 for s in solutions for p in s.rates)
    print(
        f"SIMULATED policy (known per-prefix success rates, not a model): {len(solutions):,} solutions, "
        f"{steps:,} steps ({steps / len(solutions):.2f} per solution), {negatives / steps:.1%} steps with rate 0, "
        f"positive rates {args.positive_rates} on (0, 1], k = {K}. Tokens are modelled (remaining steps' lengths)."
    )
    rows = run_strategies(
        solutions,
        streams=streams,
        oracle_for=lambda number, solution, stream, cost: SimulatedPolicy(solution, stream, cost),
        steps_of=lambda solution: [f"s{i}" for i in range(len(solution.rates))],
    )
    observed_negative = sum(label == -1 for labels in rows[0].labels for label in labels) / steps
    print(
        f"exhaustive's value labels: {observed_negative:.1%} negative (rate-0 steps plus positives with 0 of {K} right)"
    )
    print_table(rows, targets=True)
    expected = expected_adaptive_draws(solutions)
    print(
        f"expected draws of adaptive with identical labels (sum of E[min(K, first right)]): {expected:,.0f}, "
        f"i.e. {rows[0].cost.completions / expected:.2f}x fewer; no strategy reading i.i.d. draws can do better"
    )


# --------------------------------------------------------------------------- the real tiny model

REAL_SOLUTIONS = [
    (
        "What is 2 + 3?",
        "5",
        ["Two plus three.", "Count: 3, 4, 5.", "So 2 + 3 = 5.", "The answer is \\boxed{5}."],
    ),
    (
        "How many sides has a triangle?",
        "3",
        ["A triangle is a polygon.", "It has three corners.", "\\boxed{3}"],
    ),
    ("What is 6 * 7?", "42", ["6 * 7 = 6 * 5 + 6 * 2.", "30 + 12 = 42.", "\\boxed{42}"]),
    ("What is 10 - 4?", "6", ["Take 4 from 10.", "10 - 4 = 6.", "Check: 6 + 4 = 10.", "\\boxed{6}"]),
    ("What is half of 18?", "9", ["18 / 2.", "That is 9.", "\\boxed{9}"]),
]


def draw_seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


@dataclass
class TinyModelPolicy:
    """The batched oracle of one real solution: one seeded generate call per draw (identical draws
    across strategies); a completion is right when judge_response accepts prefix + completion."""

    backend: object
    solution_number: int
    question: str
    answer: str
    image: object
    cost: Cost
    max_new_tokens: int
    used: dict = field(default_factory=dict)

    def __call__(self, requests):
        from annotation.steps import join_steps
        from prm.core.answers import judge_response
        from workers.generation.base import GenerationRequest, SamplingParams
        from workers.generation.prompting import solution_messages

        self.cost.calls += 1
        messages = solution_messages(question=self.question, num_images=1)
        results = []
        for prefix, k in requests:
            step = len(prefix) - 1
            continuation = join_steps(list(prefix))
            outcomes = []
            for _ in range(k):
                draw = self.used.get(step, 0)
                self.used[step] = draw + 1
                sampling = SamplingParams(
                    temperature=1.0,
                    max_new_tokens=self.max_new_tokens,
                    seed=draw_seed(self.solution_number, step, draw),
                )
                request = GenerationRequest(
                    messages=messages, images=[self.image], continuation=continuation, n=1, sampling=sampling
                )
                (completion,) = self.backend.generate([request])[0]
                text = completion.text
                self.cost.completions += 1
                self.cost.tokens += len(self.backend.tokenizer(text, add_special_tokens=False)["input_ids"])
                outcomes.append(judge_response(continuation + "\n\n" + text, self.answer)[1])
            results.append(outcomes)
        return results


def real_model(args) -> None:
    from PIL import Image

    from prm.core.tiny_models import build_tiny_qwen2_vl
    from workers.generation.transformers_backend import TransformersBackend

    solutions = REAL_SOLUTIONS[: args.real_solutions]
    image = Image.new("RGB", (56, 56), (200, 120, 40))
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        backend = TransformersBackend(model_path=str(build_tiny_qwen2_vl(Path(directory))), device="cpu")
        print(
            f"\nREAL tiny model end to end (tiny Qwen2-VL, RANDOM weights: plumbing only, every label is "
            f"negative but where the prefix already holds the boxed answer): {len(solutions)} solutions, "
            f"{sum(len(s[2]) for s in solutions)} steps, k = {args.real_k}, "
            f"max_new_tokens = {args.real_max_new_tokens}, built and loaded in {time.perf_counter() - started:.1f}s. "
            f"Tokens are counted by re-tokenizing each completion."
        )
        rows = run_strategies(
            solutions,
            streams=[None] * len(solutions),
            oracle_for=lambda number, solution, _stream, cost: TinyModelPolicy(
                backend, number, solution[0], solution[1], image, cost, args.real_max_new_tokens
            ),
            steps_of=lambda solution: solution[2],
            k=args.real_k,
        )
        backend.close()
    print_table(rows, targets=False)
    labels = [label for row in rows for labels in row.labels for label in labels]
    print(
        f"value labels over all strategies: {dict(sorted((str(x), labels.count(x)) for x in set(labels)))}. "
        f"Random weights never answer right: a completion is judged right only when the prefix already "
        f"ends in the right \\boxed{{}} answer (the last step), which also breaks first-error search's "
        f"monotone assumption here (a good last step after bad ones)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solutions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--positive-rates", choices=["uniform", "grid16"], default="uniform")
    parser.add_argument(
        "--error-rate", type=float, default=ERROR_RATE, help="share of solutions with an error"
    )
    parser.add_argument("--real-solutions", type=int, default=4, help="0 skips the real tiny model")
    parser.add_argument("--real-max-new-tokens", type=int, default=8)
    parser.add_argument("--real-k", type=int, default=4, help="k of the real run (CPU generate is slow)")
    args = parser.parse_args(argv)
    simulated(args)
    if args.real_solutions:
        real_model(args)


if __name__ == "__main__":
    main()
