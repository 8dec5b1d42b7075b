"""Agreement statistics against published and hand-computed examples."""

import pytest

from annotation.agreement import (
    binary_label,
    coder_pairs,
    cohen_kappa,
    krippendorff_alpha_nominal,
    pairwise_agreement,
    percent_agreement,
)


def _units(rows: dict[str, list]) -> dict:
    length = len(next(iter(rows.values())))
    return {unit: {coder: values[unit] for coder, values in rows.items()} for unit in range(length)}


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units,
# values 1-5, missing data; the paper gives nominal alpha = 0.743.
RELIABILITY_DATA = _units(
    {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
)


def test_krippendorff_classic_reliability_data_example():
    # Exact value: 1 - (n - 1) * D_o / sum(n_c * n_k), n = 40 pairable values.
    assert krippendorff_alpha_nominal(RELIABILITY_DATA) == pytest.approx(0.743421, abs=1e-6)
    assert round(krippendorff_alpha_nominal(RELIABILITY_DATA), 3) == 0.743


def test_krippendorff_two_coders_binary_example():
    # Same paper, section A: two observers, ten units, binary data, alpha = 0.095.
    units = _units({"A": [0, 1, 0, 0, 0, 0, 0, 0, 1, 0], "B": [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]})
    # By hand: n = 20, o(0,1) = o(1,0) = 4, n_0 = 14, n_1 = 6: 1 - 19 * 8 / (2 * 14 * 6) = 1 - 152/168.
    assert krippendorff_alpha_nominal(units) == pytest.approx(1 - 152 / 168)


def test_krippendorff_ignores_units_with_one_value_and_missing_coders():
    units = {"s1": {"a": 1, "b": 1}, "s2": {"a": -1, "b": 1}, "s3": {"a": 0, "b": 0}}
    # By hand: n = 6; o(1,1) = 2, o(0,0) = 2, o(1,-1) = o(-1,1) = 1; n_1 = 3, n_-1 = 1, n_0 = 2.
    # D_o = 2, sum over c != k of n_c n_k = 2 * (3*1 + 3*2 + 1*2) = 22: alpha = 1 - 5 * 2 / 22.
    expected = 1 - 10 / 22
    assert krippendorff_alpha_nominal(units) == pytest.approx(expected)
    padded = {**units, "lonely": {"a": -1, "b": None}, "absent": {"c": 1}}
    assert krippendorff_alpha_nominal(padded) == pytest.approx(expected)


def test_krippendorff_undefined_and_perfect_cases():
    assert krippendorff_alpha_nominal({}) is None
    assert krippendorff_alpha_nominal({"s": {"a": 1}}) is None
    assert krippendorff_alpha_nominal({"s": {"a": 1, "b": 1}, "t": {"a": 1, "b": 1}}) is None  # no variation
    assert krippendorff_alpha_nominal({"s": {"a": 1, "b": 1}, "t": {"a": -1, "b": -1, "c": -1}}) == 1.0
    # Systematic disagreement goes below zero.
    assert krippendorff_alpha_nominal({"s": {"a": 1, "b": -1}, "t": {"a": -1, "b": 1}}) < 0


def test_cohen_kappa_textbook_example():
    # 50 judgements: yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 0.7, p_e = 0.5, kappa = 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert percent_agreement(pairs) == pytest.approx(0.7)
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_three_labels_by_hand():
    pairs = [(1, 1)] * 4 + [(1, -1)] + [(1, 0)] * 2 + [(0, 0)] + [(-1, -1)] * 2
    # p_o = 7/10; marginals a: {1: 7, 0: 1, -1: 2}, b: {1: 4, 0: 3, -1: 3}; p_e = (28 + 3 + 6) / 100.
    assert cohen_kappa(pairs) == pytest.approx((0.7 - 0.37) / (1 - 0.37))
    assert cohen_kappa([(1, 1), (1, 1)]) is None  # chance agreement is certain: undefined
    assert cohen_kappa([(1, -1), (-1, 1)]) == pytest.approx(-1.0)
    assert cohen_kappa([]) is None and percent_agreement([]) is None


def test_pairwise_agreement_uses_only_units_both_labelled():
    units = {
        1: {"ann": 1, "bob": 1, "cy": 1},
        2: {"ann": -1, "bob": 1},
        3: {"ann": 0, "bob": 0, "cy": -1},
        4: {"bob": -1, "cy": -1},
        5: {"ann": 1, "cy": None},
    }
    result = pairwise_agreement(units)
    assert list(result) == [("ann", "bob"), ("ann", "cy"), ("bob", "cy")]
    ann_bob = result["ann", "bob"]
    assert coder_pairs(units, "ann", "bob") == [(1, 1), (-1, 1), (0, 0)]
    assert (ann_bob.units, ann_bob.percent) == (3, pytest.approx(2 / 3))
    assert ann_bob.kappa == pytest.approx(cohen_kappa([(1, 1), (-1, 1), (0, 0)]))
    assert result["ann", "cy"].units == 2 and result["ann", "cy"].percent == pytest.approx(0.5)
    assert result["bob", "cy"].units == 3


def test_binary_label_thresholds():
    assert binary_label(0.0, threshold=0.0) == -1
    assert binary_label(1 / 16, threshold=0.0) == 1
    assert binary_label(0.5, threshold=0.5) == -1
    assert binary_label(0.51, threshold=0.5) == 1
