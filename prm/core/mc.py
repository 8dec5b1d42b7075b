"""Monte Carlo step estimation (pure: no Django, no model).

mc_i = right / judged completions continuing the prefix s_0..s_i. The strategies below only ask
an oracle `sample(prefix_steps, k) -> list[bool | None]` (or its batched form, one call per round,
so a back end can batch all the prefixes of a round) and return per-step counts. A None outcome is
a truncated rollout (the token limit cut it before an answer): it is counted as drawn and as
truncated, but judged neither right nor wrong, so it is left out of mc_i's denominator (a
truncated rollout says nothing about whether the prefix can still reach the answer; counting it
wrong would bias mc_i low for long solutions). A step whose every draw was truncated has no estimate.

- exhaustive (VisualPRM): k completions for every step; solutions longer than `max_steps` are
  estimated on merged steps (consecutive groups of ceil(n / max_steps), as annotation.steps.merge_steps
  and the released pipeline's split_response). Its counts are the only ones that estimate mc_i;
- adaptive: rounds of `round_size` completions (default 1: sequential sampling); a step stops at
  its first right completion or at k draws. It reads each prefix's draws in order, so on the same
  draws as exhaustive its value label (any right among the first k) is identical, but its counts
  are a stopping rule's (1/1 after one lucky draw), not an estimate of mc_i. Rounds of 1 are the
  cheapest such strategy: a label equal to "any right among k i.i.d. draws" needs one right draw
  or all k wrong, so E[completions] = sum over steps of E[min(k, first right)] (H_k ~ 3.4 for k=16
  and a success rate uniform on (0, 1]; k for a step with no right completion);
- first-error search (OmegaPRM's binary search, "binary_search"): assumes monotone labels (a step
  with a right completion has only such steps before it; one without has none after) and finds the
  first step without a right completion. It probes the last step first: most solutions have no
  error, and a good last step settles every step at once. Otherwise it bisects the steps before
  it. Unprobed steps get inferred labels, without counts.

Early stop (`early_stop=True`, the released pipeline's default; VisualPRM400K-v1.1 was built
without it): once a step has mc = 0, the steps after it are not sampled and get no estimate.

Value and advantage labels are derived from the counts here, never stored beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_K = 16
# Rounds of 1 draw the fewest completions; each round still batches every open prefix.
DEFAULT_ROUND_SIZE = 1
DEFAULT_MAX_STEPS = 12
# VisualPRM400K-v1.1 merged solutions into at most 16 steps.
MAX_STEPS_CHOICES = (12, 16)
STRATEGIES = ("exhaustive", "adaptive", "binary_search")

# A rollout's outcome: right, wrong, or None when truncated (not judged).
Outcome = bool | None
# sample(prefix_steps, k): the outcome of each of k completions of the prefix.
Oracle = Callable[[Sequence[str], int], list[Outcome]]
# The batched form: one call per round with every (prefix_steps, k) of the round.
BatchOracle = Callable[[list[tuple[Sequence[str], int]]], list[list[Outcome]]]


@dataclass(frozen=True)
class StepEstimate:
    """Counts of one (possibly merged) step, or an inferred label without counts (binary search).

    num_total counts judged completions only; num_truncated the draws cut by the token limit.
    """

    num_correct: int = 0
    num_total: int = 0
    num_truncated: int = 0
    inferred_positive: bool | None = None  # set only when the step was not sampled

    @property
    def mc(self) -> float | None:
        return self.num_correct / self.num_total if self.num_total else None

    @property
    def sampled(self) -> bool:
        return self.num_total > 0

    @property
    def drawn(self) -> int:
        return self.num_total + self.num_truncated

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[Outcome]) -> StepEstimate:
        judged = [outcome for outcome in outcomes if outcome is not None]
        return cls(num_correct=sum(judged), num_total=len(judged), num_truncated=len(outcomes) - len(judged))


@dataclass(frozen=True)
class MCResult:
    groups: list[list[int]]  # original step indices in each estimated (merged) step
    estimates: list[StepEstimate]  # one per group
    rollouts: int  # completions drawn, truncated ones included
    strategy: str = "exhaustive"

    @property
    def truncated(self) -> int:
        return sum(estimate.num_truncated for estimate in self.estimates)

    def per_step(self) -> list[StepEstimate]:
        """Each original step with its group's estimate (a merged step is one step to the estimator)."""
        by_step: dict[int, StepEstimate] = {}
        for group, estimate in zip(self.groups, self.estimates, strict=True):
            for index in group:
                by_step[index] = estimate
        return [by_step[i] for i in sorted(by_step)]


def step_groups(num_steps: int, max_steps: int | None = DEFAULT_MAX_STEPS) -> list[list[int]]:
    """Consecutive groups of step indices, at most max_steps of them (merge_steps' arithmetic)."""
    if max_steps is None or num_steps <= max_steps:
        return [[i] for i in range(num_steps)]
    size = math.ceil(num_steps / max_steps)
    return [list(range(start, min(start + size, num_steps))) for start in range(0, num_steps, size)]


def batched(sample: Oracle) -> BatchOracle:
    def sample_batch(requests: list[tuple[Sequence[str], int]]) -> list[list[Outcome]]:
        return [sample(prefix, k) for prefix, k in requests]

    return sample_batch


def _prefixes(steps: Sequence[str], groups: list[list[int]]) -> list[list[str]]:
    return [list(steps[: group[-1] + 1]) for group in groups]


def _stops_here(estimate: StepEstimate) -> bool:
    """Early stop's rule: the step was judged and none of its completions was right (mc = 0)."""
    return estimate.sampled and estimate.num_correct == 0


def _result(groups, estimates, *, strategy: str) -> MCResult:
    # Steps after an early stop were not sampled: an empty estimate, no label.
    estimates = estimates + [StepEstimate()] * (len(groups) - len(estimates))
    return MCResult(
        groups=groups, estimates=estimates, rollouts=sum(e.drawn for e in estimates), strategy=strategy
    )


def exhaustive(
    steps: Sequence[str],
    sample_batch: BatchOracle,
    *,
    k: int = DEFAULT_K,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    early_stop: bool = False,
) -> MCResult:
    groups = step_groups(len(steps), max_steps)
    prefixes = _prefixes(steps, groups)
    if not early_stop:
        outcomes = sample_batch([(prefix, k) for prefix in prefixes]) if prefixes else []
        return _result(groups, [StepEstimate.from_outcomes(o) for o in outcomes], strategy="exhaustive")
    # Early stop decides each step from the one before it, so the prefixes go one round each.
    estimates: list[StepEstimate] = []
    for prefix in prefixes:
        (outcomes,) = sample_batch([(prefix, k)])
        estimates.append(StepEstimate.from_outcomes(outcomes))
        if _stops_here(estimates[-1]):
            break
    return _result(groups, estimates, strategy="exhaustive")


def _adaptive_counts(
    prefixes: list[list[str]], sample_batch: BatchOracle, *, k: int, round_size: int
) -> list[StepEstimate]:
    """Counts per prefix, drawing `round_size` at a time until a right one or k draws in all."""
    outcomes: list[list[Outcome]] = [[] for _ in prefixes]
    open_indices = list(range(len(prefixes)))
    while open_indices:
        requests = [(prefixes[i], min(round_size, k - len(outcomes[i]))) for i in open_indices]
        results = sample_batch(requests)
        still_open = []
        for i, result in zip(open_indices, results, strict=True):
            outcomes[i].extend(result)
            if True not in outcomes[i] and len(outcomes[i]) < k:
                still_open.append(i)
        open_indices = still_open
    return [StepEstimate.from_outcomes(o) for o in outcomes]


def adaptive(
    steps: Sequence[str],
    sample_batch: BatchOracle,
    *,
    k: int = DEFAULT_K,
    round_size: int = DEFAULT_ROUND_SIZE,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    early_stop: bool = False,
) -> MCResult:
    groups = step_groups(len(steps), max_steps)
    prefixes = _prefixes(steps, groups)
    round_size = max(1, min(round_size, k))
    if not early_stop:
        estimates = _adaptive_counts(prefixes, sample_batch, k=k, round_size=round_size)
        return _result(groups, estimates, strategy="adaptive")
    estimates = []
    for prefix in prefixes:
        (estimate,) = _adaptive_counts([prefix], sample_batch, k=k, round_size=round_size)
        estimates.append(estimate)
        if _stops_here(estimate):
            break
    return _result(groups, estimates, strategy="adaptive")


def binary_search(
    steps: Sequence[str],
    sample_batch: BatchOracle,
    *,
    k: int = DEFAULT_K,
    round_size: int = DEFAULT_ROUND_SIZE,
    max_steps: int | None = DEFAULT_MAX_STEPS,
) -> MCResult:
    """Find the first step with no right completion, probing adaptively; infer the rest (monotone).

    The last step is probed first: if it has a right completion, so (monotone) does every step
    before it, and one probe labels the whole solution. Otherwise the first error lies at or
    before it and the steps before it are bisected.
    """
    groups = step_groups(len(steps), max_steps)
    prefixes = _prefixes(steps, groups)
    round_size = max(1, min(round_size, k))
    probed: dict[int, StepEstimate] = {}

    def probe(index: int) -> bool:
        (probed[index],) = _adaptive_counts([prefixes[index]], sample_batch, k=k, round_size=round_size)
        return probed[index].num_correct > 0

    first_error = len(groups)  # len(groups): no error
    if groups and not probe(len(groups) - 1):
        low, high = 0, len(groups) - 1  # the first error lies in [low, high]; high is known bad
        while low < high:
            middle = (low + high) // 2
            if probe(middle):
                low = middle + 1
            else:
                high = middle
        first_error = low
    estimates = [
        probed[index] if index in probed else StepEstimate(inferred_positive=index < first_error)
        for index in range(len(groups))
    ]
    return MCResult(
        groups=groups,
        estimates=estimates,
        rollouts=sum(e.drawn for e in probed.values()),
        strategy="binary_search",
    )


def estimate(
    steps: Sequence[str],
    sample_batch: BatchOracle,
    *,
    strategy: str,
    k: int = DEFAULT_K,
    round_size: int = DEFAULT_ROUND_SIZE,
    max_steps: int | None = DEFAULT_MAX_STEPS,
    early_stop: bool = False,
) -> MCResult:
    """Run `strategy`; `early_stop` applies to exhaustive and adaptive (binary search infers the
    steps after the first error by itself)."""
    if strategy == "exhaustive":
        return exhaustive(steps, sample_batch, k=k, max_steps=max_steps, early_stop=early_stop)
    if strategy == "adaptive":
        return adaptive(steps, sample_batch, k=k, round_size=round_size, max_steps=max_steps, early_stop=early_stop)
    if strategy == "binary_search":
        return binary_search(steps, sample_batch, k=k, round_size=round_size, max_steps=max_steps)
    raise ValueError(f"unknown Monte Carlo strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def gives_estimates(strategy: str) -> bool:
    """Whether a strategy's counts estimate mc_i (only exhaustive's: the others stop sampling on
    what they saw, so their right/total is no estimate of the success rate)."""
    return strategy == "exhaustive"


# --------------------------------------------------------------------------- derived labels


def value_label(estimate: StepEstimate, *, threshold: float = 0.0) -> int | None:
    """+1 if mc > threshold, else -1; an inferred estimate gives its inferred sign; None if unknown."""
    if estimate.sampled:
        return 1 if estimate.mc > threshold else -1
    if estimate.inferred_positive is not None:
        return 1 if estimate.inferred_positive else -1
    return None


def value_labels(estimates: Sequence[StepEstimate], *, threshold: float = 0.0) -> list[int | None]:
    return [value_label(e, threshold=threshold) for e in estimates]


def advantage_labels(
    mc_values: Sequence[float | None], *, tolerance: float = 0.0, root_mc: float | None = None
) -> list[int | None]:
    """sign(mc_i - mc_{i-1}) as +1 / 0 / -1 with |difference| <= tolerance counting as 0.

    Step 0 compares with `root_mc` (the mc of the bare question) when known, else has no label;
    a step next to an unknown mc has none either.
    """
    labels: list[int | None] = []
    previous = root_mc
    for current in mc_values:
        if current is None or previous is None:
            labels.append(None)
        else:
            difference = current - previous
            labels.append(0 if abs(difference) <= tolerance else (1 if difference > 0 else -1))
        previous = current
    return labels
