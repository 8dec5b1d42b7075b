"""The held-out split never leaks across versions: an item once held out stays held out as the
project grows, and a candidate and the live version are compared only on items neither trained on."""

from __future__ import annotations

import pytest

from annotation.models import GoldLabel
from prm.core.merge import MergePolicy
from prm.evaluation import held_out_set_build
from prm.models import ItemSplit
from prm.training_data import training_set_build
from tests.factories import make_solution

pytestmark = pytest.mark.django_db
POLICY = MergePolicy(validation_fraction=0.25, seed=3)


def add_items(project, start: int, count: int) -> None:
    for i in range(start, start + count):
        solution = make_solution(project, f"q{i}", ["s0", "s1"])
        for step, value in zip(solution.steps.order_by("index"), (1, -1), strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="t")


def sides(training_set) -> tuple[set[int], set[int]]:
    return {e.item_id for e in training_set.train}, {e.item_id for e in training_set.validation}


def test_no_item_moves_from_validation_to_train_as_the_project_grows(project):
    add_items(project, 0, 20)
    train_1, validation_1 = sides(training_set_build(project=project, policy=POLICY))  # version 1 trains on train_1
    assert len(validation_1) == 5 and not train_1 & validation_1
    for start in (20, 40, 60):  # the project grows fourfold, build after build
        add_items(project, start, 20)
        train_n, validation_n = sides(training_set_build(project=project, policy=POLICY))
        assert validation_1 <= validation_n  # held out once, held out for good
        assert train_1 <= train_n  # and nothing version 1 trained on is ever held out
        assert not train_n & validation_n
    assert len(validation_n) == 20  # the fraction is kept on the items added: round(0.25 * 80)
    assert ItemSplit.objects.filter(project=project, held_out=True).count() == 20


def test_the_recorded_split_stands_whatever_the_seed(project):
    add_items(project, 0, 12)
    _, first = sides(training_set_build(project=project, policy=POLICY))
    _, other_seed = sides(training_set_build(project=project, policy=MergePolicy(validation_fraction=0.5, seed=9)))
    assert other_seed == first


def test_comparison_set_excludes_every_item_a_version_trained_on(project):
    add_items(project, 0, 20)
    train_live, _ = sides(training_set_build(project=project, policy=POLICY))  # the live version's data
    add_items(project, 20, 20)
    train_candidate, _ = sides(training_set_build(project=project, policy=POLICY))
    held_out = held_out_set_build(project=project, policy=POLICY, max_steps_per_solution=12)
    compared = {item.item_id for item in held_out.items}
    assert len(compared) == 10
    assert not compared & (train_live | train_candidate)
