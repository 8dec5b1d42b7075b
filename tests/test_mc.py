"""Monte Carlo strategies on synthetic oracles whose true per-step success rates are known."""

from __future__ import annotations

import random

import pytest

from annotation.steps import merge_steps
from prm.core import mc


def scripted_oracle(rates: list[float]):
    """Completion j of a prefix is right iff j < round(rate * k): exact, reproducible counts."""

    def sample(prefix, k):
        return [j < round(rates[len(prefix) - 1] * k) for j in range(k)]

    return mc.batched(sample)


class CoupledOracle:
    """Each prefix has one fixed stream of Bernoulli draws; every call consumes the next ones.

    Two strategies run on copies of the same streams see the same completions, so their labels
    differ only by what they chose to sample.
    """

    def __init__(self, rates: list[float], seed: str, length: int = 64):
        rng = random.Random(seed)
        self.streams = [[rng.random() < rate for _ in range(length)] for rate in rates]
        self.used = [0] * len(rates)
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, requests):
        self.calls.append([(len(prefix), k) for prefix, k in requests])
        results = []
        for prefix, k in requests:
            index = len(prefix) - 1
            start = self.used[index]
            results.append(self.streams[index][start : start + k])
            self.used[index] += k
        return results


def synthetic_solutions(count: int, seed: int, *, monotone: bool = True) -> list[list[float]]:
    """Per-step success rates: positive before a random first error, zero (or not) after it."""
    rng = random.Random(seed)
    solutions = []
    for _ in range(count):
        length = rng.randint(3, 12)
        first_error = rng.choice(list(range(length)) + [length] * (length // 2))
        rates = [
            rng.choice([0.9, 0.6, 0.3, 0.1])
            if i < first_error
            else (0.0 if monotone else rng.choice([0.0, 0.0, 0.2]))
            for i in range(length)
        ]
        solutions.append(rates)
    return solutions


def test_step_groups_merge_like_merge_steps():
    for length in range(1, 41):
        pieces = [str(i) for i in range(length)]
        merged = merge_steps(pieces, max_steps=12, joiner=",")
        groups = mc.step_groups(length, 12)
        assert [",".join(pieces[i] for i in group) for group in groups] == merged
        assert len(groups) <= 12


def test_exhaustive_counts_every_step_with_k_completions_and_caps_at_12_steps():
    rates = [1.0, 0.5, 0.25, 0.0]
    result = mc.exhaustive([f"s{i}" for i in range(4)], scripted_oracle(rates), k=16)
    assert [(e.num_correct, e.num_total) for e in result.estimates] == [(16, 16), (8, 16), (4, 16), (0, 16)]
    assert [e.mc for e in result.estimates] == rates
    assert result.rollouts == 64

    long = mc.exhaustive([f"s{i}" for i in range(20)], scripted_oracle([0.5] * 20), k=16)
    assert long.groups[0] == [0, 1] and len(long.groups) == 10
    assert long.rollouts == 10 * 16
    assert len(long.per_step()) == 20 and long.per_step()[1] is long.estimates[0]


def test_adaptive_stops_a_step_at_its_first_right_completion():
    rates = [1.0, 0.5, 0.0]
    oracle = CoupledOracle(rates, seed="fixed")
    oracle.streams[1] = [False] * 5 + [True] + [False] * 58  # first right completion: the 6th
    result = mc.adaptive(["a", "b", "c"], oracle, k=16, round_size=4)
    assert [(e.num_correct, e.num_total) for e in result.estimates] == [(4, 4), (1, 8), (0, 16)]
    assert result.rollouts == 28
    # Round 1 asks all three steps; later rounds only those without a right completion yet.
    assert [sorted(call) for call in oracle.calls] == [
        [(1, 4), (2, 4), (3, 4)],
        [(2, 4), (3, 4)],
        [(3, 4)],
        [(3, 4)],
    ]


def test_binary_search_finds_the_first_error_and_infers_the_rest():
    rates = [0.9, 0.9, 0.5, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0]
    result = mc.binary_search([f"s{i}" for i in range(10)], scripted_oracle(rates), k=16, round_size=4)
    assert mc.value_labels(result.estimates) == [1] * 5 + [-1] * 5
    probed = [i for i, e in enumerate(result.estimates) if e.sampled]
    # The last step first, then ceil(log2(9)) bisection probes of the nine before it: one probe
    # more than bisecting all ten, which buys the one-probe case below (most solutions).
    assert probed[-1] == 9 and len(probed) <= 5 and 5 in probed
    assert all(e.mc is None for i, e in enumerate(result.estimates) if i not in probed)
    assert result.rollouts < 10 * 16 / 2


def test_binary_search_settles_a_solution_with_a_good_last_step_in_one_probe():
    rates = [0.9, 0.1, 0.5, 0.6]
    oracle = CoupledOracle(rates, seed="fixed")
    oracle.streams[3] = [False, False, True] + [False] * 61
    result = mc.binary_search(["a", "b", "c", "d"], oracle, k=16, round_size=1)
    assert oracle.calls == [[(4, 1)], [(4, 1)], [(4, 1)]]  # sequential draws, last step only
    assert [(e.num_correct, e.num_total) for e in result.estimates][-1] == (1, 3)
    assert mc.value_labels(result.estimates) == [1, 1, 1, 1] and result.rollouts == 3


def test_adaptive_with_rounds_of_one_reads_each_stream_up_to_its_first_right_draw():
    rates = [0.5, 0.5, 0.0]
    oracle = CoupledOracle(rates, seed="fixed")
    oracle.streams[0] = [True] + [False] * 63
    oracle.streams[1] = [False, False, False, True] + [False] * 60
    result = mc.adaptive(["a", "b", "c"], oracle, k=16)  # the default: rounds of 1
    assert [(e.num_correct, e.num_total) for e in result.estimates] == [(1, 1), (1, 4), (0, 16)]
    assert result.rollouts == 21
    assert len(oracle.calls) == 16 and oracle.calls[1] == [(2, 1), (3, 1)]


def test_value_and_advantage_labels_come_from_counts():
    estimates = [
        mc.StepEstimate(8, 16),
        mc.StepEstimate(0, 16),
        mc.StepEstimate(inferred_positive=True),
        mc.StepEstimate(),
    ]
    assert mc.value_labels(estimates) == [1, -1, 1, None]
    assert mc.value_labels(estimates, threshold=0.5) == [-1, -1, 1, None]
    assert mc.advantage_labels([0.5, 0.75, 0.7, 0.1, None, 0.2], tolerance=0.1) == [
        None,
        1,
        0,
        -1,
        None,
        None,
    ]
    assert mc.advantage_labels([0.5], root_mc=0.25) == [1]
    with pytest.raises(ValueError, match="unknown Monte Carlo strategy"):
        mc.estimate(["a"], scripted_oracle([1.0]), strategy="greedy")


def _compare(solutions: list[list[float]], strategy: str, *, coupled: bool):
    """(rollouts of exhaustive, rollouts of strategy, steps whose value labels agree, steps)."""
    exhaustive_rollouts = strategy_rollouts = agreeing = steps_total = 0
    for number, rates in enumerate(solutions):
        steps = [f"s{i}" for i in range(len(rates))]
        reference = mc.exhaustive(steps, CoupledOracle(rates, seed=f"{number}"), k=16)
        other_seed = f"{number}" if coupled else f"{number}-independent"
        result = mc.estimate(
            steps, CoupledOracle(rates, seed=other_seed), strategy=strategy, k=16, round_size=4
        )
        exhaustive_rollouts += reference.rollouts
        strategy_rollouts += result.rollouts
        agreeing += sum(
            a == b
            for a, b in zip(
                mc.value_labels(result.estimates), mc.value_labels(reference.estimates), strict=True
            )
        )
        steps_total += len(rates)
    return exhaustive_rollouts, strategy_rollouts, agreeing, steps_total


def test_adaptive_gives_exhaustive_value_labels_with_fewer_rollouts():
    solutions = synthetic_solutions(300, seed=1)
    full, used, agreeing, steps = _compare(solutions, "adaptive", coupled=True)
    print(
        f"\nadaptive, same draws: {used}/{full} rollouts ({1 - used / full:.1%} saved), value labels agree on {agreeing}/{steps}"
    )
    # Same completions seen: "any right among the first 16" is decided identically.
    assert agreeing == steps
    assert used <= 0.7 * full

    full, used, agreeing, steps = _compare(solutions, "adaptive", coupled=False)
    print(f"adaptive, independent draws: agreement {agreeing / steps:.3f}")
    assert agreeing / steps >= 0.93


def test_binary_search_agrees_on_monotone_solutions_and_not_on_others():
    monotone = synthetic_solutions(300, seed=2)
    full, used, agreeing, steps = _compare(monotone, "binary_search", coupled=True)
    print(
        f"\nbinary search, monotone: {used}/{full} rollouts ({1 - used / full:.1%} saved), agreement {agreeing / steps:.3f}"
    )
    assert agreeing / steps >= 0.95
    assert used <= 0.35 * full

    _, _, agreeing_other, steps_other = _compare(
        synthetic_solutions(300, seed=2, monotone=False), "binary_search", coupled=True
    )
    print(f"binary search, non-monotone: agreement {agreeing_other / steps_other:.3f}")
    # Its assumption broken, binary search mislabels the right steps after a wrong one.
    assert agreeing_other / steps_other < agreeing / steps - 0.03


def test_on_visualprm400k_shaped_solutions_the_strategies_meet_their_measured_figures():
    """The benchmark's simulated policy (benchmarks/mc_strategies.py), 400 solutions, same draws.

    Adaptive with rounds of 1 reaches the bound sum E[min(k, first right)] (3.5x for rates uniform
    on (0, 1]: the issue's 4x is out of reach with identical labels, see prm/core/mc.py); first-error
    search meets 8x with >= 95% agreement.
    """
    from benchmarks.mc_strategies import (
        SimulatedPolicy,
        draw_stream,
        run_strategies,
        visualprm_shaped_solutions,
    )

    solutions = visualprm_shaped_solutions(400, seed=3)
    rows = run_strategies(
        solutions,
        streams=[[draw_stream(3, n, i) for i in range(len(s.rates))] for n, s in enumerate(solutions)],
        oracle_for=lambda number, solution, stream, cost: SimulatedPolicy(solution, stream, cost),
        steps_of=lambda solution: [f"s{i}" for i in range(len(solution.rates))],
    )
    by_name = {row.name: row for row in rows}
    full = by_name["exhaustive"].cost.completions
    sequential = by_name["adaptive, rounds of 1"]
    assert sequential.agreeing == sequential.steps  # identical value labels
    assert full / sequential.cost.completions >= 3.2
    assert sequential.cost.completions < by_name["adaptive, rounds of 4"].cost.completions
    first_error = by_name["first-error search"]
    assert full / first_error.cost.completions >= 8
    assert first_error.agreeing / first_error.steps >= 0.95


def test_early_stop_samples_nothing_after_the_first_step_with_mc_zero():
    rates = [1.0, 0.5, 0.0, 1.0, 1.0]
    oracle = CoupledOracle(rates, seed="early")
    result = mc.exhaustive([f"s{i}" for i in range(5)], oracle, k=4, early_stop=True)
    # As the released pipeline: one step per round, and after mc = 0 no rollouts at all.
    assert [call[0][0] for call in oracle.calls] == [1, 2, 3]
    assert [e.sampled for e in result.estimates] == [True, True, True, False, False]
    assert result.estimates[2].mc == 0 and result.estimates[3].mc is None
    assert mc.value_labels(result.per_step()) == [1, 1 if result.estimates[1].num_correct else -1, -1, None, None]
    assert result.rollouts == 12
    # Off (the default, as v1.1 was built): every step is sampled.
    assert all(e.sampled for e in mc.exhaustive([f"s{i}" for i in range(5)], scripted_oracle(rates), k=4).estimates)
    adaptive = mc.adaptive([f"s{i}" for i in range(5)], scripted_oracle([1.0, 1.0, 0.0, 1.0, 1.0]), k=4, early_stop=True)
    assert [e.sampled for e in adaptive.estimates] == [True, True, True, False, False]


def test_truncated_rollouts_are_counted_but_left_out_of_mc():
    def sample(prefix, k):  # the last two completions of every prefix hit the token limit
        return [True, False] + [None] * (k - 2) if len(prefix) == 1 else [None] * k

    result = mc.exhaustive(["s0", "s1"], mc.batched(sample), k=4)
    first, second = result.estimates
    assert (first.num_correct, first.num_total, first.num_truncated, first.mc) == (1, 2, 2, 0.5)
    # Every rollout cut: no estimate at all, rather than mc = 0.
    assert (second.num_total, second.num_truncated, second.mc, second.sampled) == (0, 4, None, False)
    assert result.rollouts == 8 and result.truncated == 6
    # Early stop does not stop on a step it could not judge.
    assert mc.exhaustive(["s0", "s1"], mc.batched(sample), k=4, early_stop=True).rollouts == 8


def test_only_exhaustive_counts_are_estimates():
    assert mc.gives_estimates("exhaustive")
    assert not mc.gives_estimates("adaptive") and not mc.gives_estimates("binary_search")
