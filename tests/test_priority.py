"""Annotation priority: disagreement, uncertainty and convincing wrong answers come first."""

from __future__ import annotations

import math

import pytest

from annotation.models import AutoLabel, Project, Role, Solution
from annotation.services.queue import next_assignment
from prm.models import PRMVersion
from tests.factories import add_member, make_solution
from workers.priority import StepEvidence, mc_uncertainty, solution_priority, solution_priority_update


def certain_right(prm: float = 0.97) -> StepEvidence:
    return StepEvidence(mc_score=1.0, mc_correct=16, mc_total=16, prm_score=prm)


def test_a_step_where_mc_and_prm_agree_with_confidence_scores_low_exactly():
    # Beta(17, 1) posterior std = sqrt(17 / (18^2 * 19)); over the uniform's 1/sqrt(12): 0.18204.
    expected_u_mc = math.sqrt(17 / (18**2 * 19)) * math.sqrt(12)
    assert mc_uncertainty(certain_right()) == pytest.approx(0.18204, abs=1e-5)
    priority = solution_priority([certain_right(prm=1.0)], is_correct=True)
    assert priority == pytest.approx(0.25 * expected_u_mc)


def test_disagreement_ranks_above_agreement():
    agreeing = [certain_right(), certain_right()]
    disagreeing = [certain_right(), StepEvidence(mc_score=1.0, mc_correct=16, mc_total=16, prm_score=0.03)]
    # The MC says the step is hopeless, the PRM is sure it is fine.
    disagreeing_negative = [certain_right(), StepEvidence(mc_score=0.0, mc_correct=0, mc_total=16, prm_score=0.97)]
    base = solution_priority(agreeing, is_correct=True)
    assert solution_priority(disagreeing, is_correct=True) > base + 0.3
    assert solution_priority(disagreeing_negative, is_correct=True) > base + 0.3


def test_uncertain_labels_rank_above_certain_ones():
    certain = solution_priority([certain_right()], is_correct=True)
    unsure_prm = solution_priority([StepEvidence(mc_score=1.0, mc_correct=16, mc_total=16, prm_score=0.5)], is_correct=True)
    few_samples = solution_priority([StepEvidence(mc_score=1.0, mc_correct=2, mc_total=2, prm_score=0.97)], is_correct=True)
    middling_mc = solution_priority([StepEvidence(mc_score=0.5, mc_correct=8, mc_total=16, prm_score=0.97)], is_correct=True)
    assert unsure_prm > certain and few_samples > certain and middling_mc > certain
    # Fewer samples of the same rate are less certain.
    assert mc_uncertainty(StepEvidence(mc_score=0.5, mc_correct=1, mc_total=2)) > mc_uncertainty(
        StepEvidence(mc_score=0.5, mc_correct=8, mc_total=16)
    )


def test_a_convincing_wrong_answer_ranks_above_the_same_solution_answered_right():
    steps = [StepEvidence(prm_score=0.95), StepEvidence(prm_score=0.9)]
    wrong, right, unknown = (solution_priority(steps, is_correct=c) for c in (False, True, None))
    assert wrong == pytest.approx(right + (2 * 0.925 - 1))
    assert right == unknown
    # An unconvincing wrong answer (the PRM already doubts it) gets no bonus.
    doubted = [StepEvidence(prm_score=0.2)]
    assert solution_priority(doubted, is_correct=False) == solution_priority(doubted, is_correct=True)


def test_unlabelled_steps_sit_between_disagreement_and_confident_agreement():
    unlabelled = solution_priority([StepEvidence()], is_correct=None)
    assert unlabelled == pytest.approx(0.5)
    assert solution_priority([certain_right()], is_correct=True) < unlabelled
    assert solution_priority([StepEvidence(mc_score=1.0, mc_correct=16, mc_total=16, prm_score=0.03)], is_correct=True) > unlabelled
    assert solution_priority([], is_correct=False) == 0.0


def test_one_doubtful_step_lifts_a_long_solution():
    long_agreeing = [certain_right()] * 10
    one_doubt = [certain_right()] * 9 + [StepEvidence(mc_score=1.0, mc_correct=16, mc_total=16, prm_score=0.03)]
    assert solution_priority(one_doubt, is_correct=True) > solution_priority(long_agreeing, is_correct=True) + 0.3


def _label(solution: Solution, *, kind: str, source: str, scores: list[float], counts: list[tuple[int, int]] | None = None):
    for i, step in enumerate(solution.steps.order_by("index")):
        correct, total = counts[i] if counts else (None, None)
        AutoLabel.objects.create(step=step, kind=kind, source=source, score=scores[i], num_correct=correct, num_total=total)


@pytest.mark.django_db
def test_stored_priorities_use_the_live_prm_and_order_the_queue(make_user):
    project = Project.objects.create(name="priorities")
    PRMVersion.objects.create(project=project, name="prm-live", backbone="tiny", directory="/nowhere", status="live")
    agreeing = make_solution(project, "q1", ["a", "b"])
    disagreeing = make_solution(project, "q2", ["a", "b"])
    convincing_wrong = make_solution(project, "q3", ["a", "b"])
    Solution.objects.filter(pk=convincing_wrong.pk).update(is_correct=False)
    for solution in (agreeing, disagreeing, convincing_wrong):
        _label(solution, kind="mc", source="policy", scores=[1.0, 1.0], counts=[(16, 16), (16, 16)])
    _label(agreeing, kind="prm", source="prm-live", scores=[0.97, 0.96])
    # An old, retired PRM agreed; the live one contradicts the MC label on step 2.
    _label(disagreeing, kind="prm", source="prm-old", scores=[0.97, 0.96])
    _label(disagreeing, kind="prm", source="prm-live", scores=[0.97, 0.02])
    _label(convincing_wrong, kind="prm", source="prm-live", scores=[0.99, 0.99])

    priorities = solution_priority_update(solution_ids=[agreeing.pk, disagreeing.pk, convincing_wrong.pk])

    stored = dict(Solution.objects.values_list("pk", "priority"))
    assert stored == pytest.approx(priorities)
    expected_disagreeing = solution_priority(
        [certain_right(0.97), StepEvidence(mc_score=1.0, mc_correct=16, mc_total=16, prm_score=0.02)], is_correct=None
    )
    assert stored[disagreeing.pk] == pytest.approx(expected_disagreeing)
    assert stored[convincing_wrong.pk] > stored[agreeing.pk] + 0.9
    assert stored[disagreeing.pk] > stored[agreeing.pk] + 0.3

    annotator = make_user("ann")
    add_member(project, annotator, Role.ANNOTATOR)
    assert next_assignment(project=project, annotator=annotator).solution_id == max(stored, key=stored.get)


@pytest.mark.django_db
def test_an_adaptive_labels_stopping_counts_are_not_read_as_an_estimate():
    project = Project.objects.create(name="adaptive priorities")
    exhaustive, adaptive = make_solution(project, "q1", ["a"]), make_solution(project, "q2", ["a"])
    AutoLabel.objects.create(step=exhaustive.steps.get(), kind="mc", source="policy", score=1.0, num_correct=1,
                             num_total=1, estimate="exhaustive")
    # One lucky draw, then the adaptive run stopped: a value label, not mc = 1/1.
    AutoLabel.objects.create(step=adaptive.steps.get(), kind="mc", source="policy", value=1, num_correct=1,
                             num_total=1, estimate="adaptive")
    priorities = solution_priority_update(solution_ids=[exhaustive.pk, adaptive.pk])
    assert priorities[adaptive.pk] == pytest.approx(solution_priority([StepEvidence(mc_value=1)], is_correct=None))
    assert priorities[exhaustive.pk] == pytest.approx(
        solution_priority([StepEvidence(mc_score=1.0, mc_correct=1, mc_total=1)], is_correct=None)
    )
    assert priorities[adaptive.pk] != pytest.approx(priorities[exhaustive.pk])
    # The database refuses a score on a stopped estimate.
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        AutoLabel.objects.create(step=adaptive.steps.get(), kind="mc", source="other", score=1.0, num_correct=1,
                                 num_total=1, estimate="adaptive")
