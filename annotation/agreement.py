"""Agreement statistics for labels (pure functions; no Django, so they can be read and tested alone).

Data shapes:
- `units`: mapping unit -> {coder: value}; a value of None (or a coder left out) is a missing label.
- `pairs`: a sequence of (value_a, value_b) judgements of the same thing by two sources.

Every statistic returns None where it is undefined (no data, or no variation to measure against),
rather than a number that would look meaningful on a dashboard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

Units = Mapping[Hashable, Mapping[Hashable, Hashable | None]]


def krippendorff_alpha_nominal(units: Units) -> float | None:
    """Krippendorff's alpha for nominal data, missing values allowed (Krippendorff 2011, section C).

    Units with fewer than two values are not pairable and are ignored. None when fewer than two
    pairable values exist or when every pairable value is the same (expected disagreement is 0).
    """
    # Coincidence matrix o[c, k]: each ordered pair of values within a unit of m values weighs 1/(m-1).
    coincidences: Counter[tuple[Hashable, Hashable]] = Counter()
    for by_coder in units.values():
        counts = Counter(value for value in by_coder.values() if value is not None)
        m = sum(counts.values())
        if m < 2:
            continue
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                ordered_pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                if ordered_pairs:
                    coincidences[c, k] += ordered_pairs / (m - 1)
    marginals: Counter[Hashable] = Counter()
    for (c, _k), weight in coincidences.items():
        marginals[c] += weight
    n = sum(marginals.values())
    if n < 2:
        return None
    observed = sum(weight for (c, k), weight in coincidences.items() if c != k)
    expected = sum(marginals[c] * marginals[k] for c in marginals for k in marginals if c != k) / (n - 1)
    if expected == 0:
        return None
    return 1.0 - observed / expected


def percent_agreement(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Share of pairs whose two values are equal, in [0, 1]."""
    if not pairs:
        return None
    return sum(1 for a, b in pairs if a == b) / len(pairs)


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters: (p_o - p_e) / (1 - p_e), p_e from each rater's own marginals.

    None when there are no pairs or when chance agreement is certain (both raters used one same value).
    """
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[value] * second[value] for value in first) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class PairAgreement:
    """Two coders compared over the units both labelled."""

    first: Hashable
    second: Hashable
    units: int
    percent: float | None
    kappa: float | None


def coder_pairs(units: Units, first: Hashable, second: Hashable) -> list[tuple[Hashable, Hashable]]:
    """(first's value, second's value) for every unit both coders labelled."""
    pairs = []
    for by_coder in units.values():
        a, b = by_coder.get(first), by_coder.get(second)
        if a is not None and b is not None:
            pairs.append((a, b))
    return pairs


def pairwise_agreement(units: Units) -> dict[tuple[Hashable, Hashable], PairAgreement]:
    """Percent agreement and Cohen's kappa for every pair of coders (coders sorted by their str)."""
    coders = sorted({coder for by_coder in units.values() for coder, v in by_coder.items() if v is not None}, key=str)
    result = {}
    for first, second in combinations(coders, 2):
        pairs = coder_pairs(units, first, second)
        result[first, second] = PairAgreement(
            first=first, second=second, units=len(pairs), percent=percent_agreement(pairs), kappa=cohen_kappa(pairs)
        )
    return result


def binary_label(score: float, *, threshold: float) -> int:
    """A machine score read as a label: +1 above the threshold, else -1 (machines have no neutral)."""
    return 1 if score > threshold else -1
