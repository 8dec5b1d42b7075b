"""One merge resolver (prm.core.merge): the merged export carries exactly the labels the PRM trains on,
advantage labels, the consensus filter, neutral "skip" and only-agreed votes included."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from annotation.models import AutoLabel, GoldLabel, HumanLabel
from annotation.selectors import ExportFilters, export_records
from prm.core.merge import MergePolicy, human_majority, merged_label, solution_labels, training_label
from prm.training_data import training_set_build
from tests.factories import make_solution

pytestmark = pytest.mark.django_db

POLICIES = [
    MergePolicy(validation_fraction=0),
    MergePolicy(validation_fraction=0, mc_label="advantage", advantage_tolerance=0.1),
    MergePolicy(validation_fraction=0, consensus_filter=True),
    MergePolicy(validation_fraction=0, neutral="skip", only_agreed=True, mc_threshold=0.3),
]


def test_majority_rule():
    assert human_majority([1, 1, -1]) == 1
    assert human_majority([1, -1]) is None  # a tie is not a majority
    assert human_majority([1, 1, 0], only_agreed=True) is None
    assert human_majority([0, 0], only_agreed=True) == 0
    assert human_majority([]) is None


def test_order_neutral_skip_and_consensus():
    policy = MergePolicy()
    assert merged_label(gold=-1, human=1, machine=1, policy=policy).source == "gold"
    assert merged_label(gold=None, human=0, machine=-1, policy=policy).value == 0  # neutral kept as 0
    assert training_label(0, policy) is True and training_label(0, MergePolicy(neutral="negative")) is False
    skip = MergePolicy(neutral="skip")
    assert merged_label(gold=0, human=1, machine=1, policy=skip).value is None  # gold 0 is not passed over
    strict = MergePolicy(consensus_filter=True)
    assert merged_label(gold=None, human=1, machine=-1, policy=strict).value is None
    assert merged_label(gold=None, human=None, machine=-1, policy=strict).value == -1
    labels = solution_labels(gold=[None, None], human=[None, None], mc_scores=[0.5, 0.5], imported=[None, None],
                             policy=MergePolicy(mc_label="advantage"))
    assert [label.value for label in labels] == [1, 0]  # "=" within tolerance 0


def _voters(make_user):
    return [make_user(f"v{i}") for i in range(3)]


def _project_with_every_kind_of_label(project, voters):
    def mc(step, score):
        AutoLabel.objects.create(step=step, kind="mc", source="mc", score=score, num_correct=round(score * 4), num_total=4)

    def votes(step, values):
        for voter, value in zip(voters, values, strict=False):
            HumanLabel.objects.create(step=step, annotator=voter, value=value)

    a = make_solution(project, "qa", ["a0", "a1", "a2", "a3"]).steps.order_by("index")
    GoldLabel.objects.create(step=a[0], value=-1, source=GoldLabel.Source.IMPORTED, origin="t")
    votes(a[0], [1, 1, 1])  # loses to gold
    votes(a[1], [1, 1, -1])  # majority +; MC below says - (consensus drops it)
    mc(a[1], 0.0)
    mc(a[2], 0.5)
    mc(a[3], 0.5)  # advantage: no change -> "="
    b = make_solution(project, "qb", ["b0", "b1", "b2", "b3"]).steps.order_by("index")
    votes(b[0], [1, -1])  # a tie: no human label, the MC value decides
    mc(b[0], 0.25)
    mc(b[1], 0.75)
    AutoLabel.objects.create(step=b[2], kind="imported", source="ds", value=-1)
    mc(b[3], 0.0)  # advantage: predecessor has no MC estimate -> none
    c = make_solution(project, "qc", ["c0", "c1", "c2"]).steps.order_by("index")
    votes(c[0], [0, 0, 0])
    votes(c[1], [1, 1, 0])  # a majority, but not agreed
    mc(c[1], 1.0)
    mc(c[2], 1.0)
    make_solution(project, "qd", ["d0"])  # no label at all


@pytest.mark.parametrize("policy", POLICIES, ids=["value", "advantage", "consensus", "skip-agreed"])
def test_merged_export_equals_the_training_labels(project, make_user, policy):
    _project_with_every_kind_of_label(project, _voters(make_user))
    training = training_set_build(project=project, policy=policy)
    trained = {example.solution_id: example.labels for example in training.train + training.validation}
    records = list(export_records(project=project, filters=ExportFilters.for_policy(policy)))
    assert len(records) == 4
    for record in records:
        exported = [training_label(step.label, policy) for step in record.steps]
        solution_id = project.items.get(external_id=record.item_external_id).solutions.get().id
        if solution_id in trained:
            assert exported == trained[solution_id], record.item_external_id
        else:
            assert all(label is None for label in exported)
    assert len(trained) == 3


def test_hand_computed_merged_labels(project, make_user):
    _project_with_every_kind_of_label(project, _voters(make_user))

    def exported(policy):
        return {r.item_external_id: [s.label for s in r.steps]
                for r in export_records(project=project, filters=ExportFilters.for_policy(policy))}

    assert exported(POLICIES[0]) == {
        "qa": [-1, 1, 1, 1], "qb": [1, 1, -1, -1], "qc": [0, 1, 1], "qd": [None],
    }
    assert exported(POLICIES[1]) == {  # advantage within 0.1
        "qa": [-1, 1, 1, 0], "qb": [1, 1, -1, None], "qc": [0, 1, 0], "qd": [None],
    }
    assert exported(POLICIES[2])["qa"] == [-1, None, 1, 1]  # human + vs MC -: dropped
    # skip + only agreed + threshold 0.3: c0 neutral dropped; c1 not agreed -> MC 1.0; b0 MC 0.25 -> -.
    assert exported(POLICIES[3]) == {
        "qa": [-1, -1, 1, 1], "qb": [-1, 1, -1, -1], "qc": [None, 1, 1], "qd": [None],
    }


def test_export_command_takes_the_policy(project, make_user, tmp_path):
    _project_with_every_kind_of_label(project, _voters(make_user))
    out = tmp_path / "merged.jsonl"
    call_command("export_dataset", "--project", project.name, "--format", "visualprocessbench", "--out", str(out),
                 "--label-source", "merged", "--mc-label", "advantage", "--advantage-tolerance", "0.1")
    by_steps = {tuple(r["response"]["steps"]): r["response"]["process_correctness"]
                for r in map(json.loads, out.read_text().splitlines())}
    # Only fully labelled solutions are written in this format (qb's last step has no advantage label).
    assert by_steps == {("a0", "a1", "a2", "a3"): [-1, 1, 1, 0], ("c0", "c1", "c2"): [0, 1, 0]}
    recorded = json.dumps(POLICIES[2].to_dict())
    call_command("export_dataset", "--project", project.name, "--format", "visualprocessbench", "--out", str(out),
                 "--merge-policy", recorded)
    steps = [tuple(json.loads(line)["response"]["steps"]) for line in out.read_text().splitlines()]
    assert ("a0", "a1", "a2", "a3") not in steps  # the consensus filter left a1 unlabelled


def test_export_command_refuses_a_bad_policy(project, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises((CommandError, SystemExit)):
        call_command("export_dataset", "--project", project.name, "--format", "visualprocessbench",
                     "--out", str(tmp_path / "x.jsonl"), "--merge-policy", '{"mc_label": "sideways"}')


def test_early_stopping_mc_runs_train_and_export_by_their_value_label(project):
    """Adaptive and first-error MC runs store no mc_i, only their value label (+1: some completion
    reached the answer): it is what the PRM trains on under VisualPRM's threshold 0, in training and
    in the merged and MC exports alike."""
    steps = make_solution(project, "qe", ["e0", "e1", "e2"]).steps.order_by("index")
    AutoLabel.objects.create(step=steps[0], kind="mc", source="mc-adaptive", estimate="adaptive", value=1,
                             num_correct=1, num_total=1)
    AutoLabel.objects.create(step=steps[1], kind="mc", source="mc-adaptive", estimate="adaptive", value=-1,
                             num_correct=0, num_total=16)
    AutoLabel.objects.create(step=steps[2], kind="mc", source="mc-first-error", estimate="first_error", value=-1)

    def trained(policy):
        data = training_set_build(project=project, policy=policy)
        return [example.labels for example in data.train + data.validation]

    def exported(policy, source="merged"):
        filters = ExportFilters.for_policy(policy)
        if source != "merged":
            filters = ExportFilters(label_source=source, mc_threshold=policy.mc_threshold)
        return [[s.label for s in r.steps] for r in export_records(project=project, filters=filters)]

    value = MergePolicy(validation_fraction=0)
    assert trained(value) == [[True, False, False]]
    assert exported(value) == [[1, -1, -1]] == exported(value, source="mc")
    # mc_i is unknown, so neither another threshold nor a difference of mc_i can be read from them.
    assert trained(MergePolicy(validation_fraction=0, mc_threshold=0.3)) == []
    assert exported(MergePolicy(validation_fraction=0, mc_threshold=0.3), source="mc") == [[None, None, None]]
    advantage = MergePolicy(validation_fraction=0, mc_label="advantage")
    assert trained(advantage) == [[True, None, None]]
    assert exported(advantage) == [[1, None, None]]
