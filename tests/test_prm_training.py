"""PRM training: the loop on tiny Qwen2-VL and LLaVA backbones (loss falls, the saved model scores),
resume after a kill, checkpoints, LoRA; the merged training set from the database; the train job."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from django.db.models import F
from PIL import Image

from annotation.models import AutoLabel, GoldLabel, HumanLabel, Item
from prm.core.conversation import IGNORE_INDEX, encode_conversation, label_token_ids, load_processor
from prm.core.merge import MergePolicy, machine_labels, resolve_step_label
from prm.core.scoring import PRMScorer
from prm.core.tiny_models import build_tiny_backbone
from prm.core.training import STATE_FILE, latest_checkpoint, train_prm, warmup_cosine
from prm.core.training_config import TrainConfig
from prm.training_data import training_set_build
from tests.factories import make_solution

QUESTION = "What colour is the square?"
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40)}


def _color_examples(processor, n: int, *, seed: int = 0):
    """(steps, images, labels) of the red/green task: "+" iff the claimed colour is the image's."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        shown, said = rng.choice(list(COLORS)), rng.choice(list(COLORS))
        rows.append((["Look at the image.", f"The square is {said}."], [Image.new("RGB", (56, 56), COLORS[shown])],
                     [True, said == shown]))
    label_ids = label_token_ids(processor)
    encoded = [
        encode_conversation(processor, question=QUESTION, steps=steps, images=images, step_labels=labels,
                            label_ids=label_ids)
        for steps, images, labels in rows
    ]
    return rows, encoded


def _nll(directory, rows) -> float:
    """Mean -log P(label) of the labelled steps under the model in `directory`, as PRMScorer reads it."""
    scorer = PRMScorer(directory)
    total, count = 0.0, 0
    for steps, images, labels in rows:
        for score, label in zip(scorer.score_steps(question=QUESTION, steps=steps, images=images), labels, strict=True):
            total -= math.log(score if label else 1 - score)
            count += 1
    return total / count


@pytest.fixture(scope="module", params=["qwen2_vl", "llava"])
def backbone(request, tmp_path_factory):
    return build_tiny_backbone(request.param, tmp_path_factory.mktemp(request.param))


def _config(backbone, **overrides) -> TrainConfig:
    settings = dict(backbone=str(backbone), learning_rate=2e-3, weight_decay=0.0, epochs=4, batch_size=4,
                    checkpoint_every=100, warmup_ratio=0.1)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_lowers_the_loss_saves_and_the_saved_model_scores(backbone, tmp_path):
    processor = load_processor(backbone)
    rows, examples = _color_examples(processor, 12)
    before = _nll(backbone, rows)
    reported = []
    result = train_prm(
        config=_config(backbone), examples=examples, output_dir=tmp_path / "run",
        progress=lambda step, loss, lr, speed: reported.append((step, loss, lr, speed)),
    )
    assert result.steps == result.total_steps == 4 * 3  # 12 examples / batch 4 = 3 steps an epoch
    assert [step for step, *_ in reported] == list(range(1, 13))
    assert all(speed > 0 for *_, speed in reported)
    losses = [loss for _, loss, _, _ in reported]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    after = _nll(result.model_dir, rows)
    assert after < before - 0.1, (before, after)
    scores = PRMScorer(result.model_dir).score_steps(question=QUESTION, steps=rows[0][0], images=rows[0][1])
    assert len(scores) == 2 and all(0 < s < 1 for s in scores)
    saved = json.loads((result.model_dir / "train_config.json").read_text())
    assert saved["learning_rate"] == 2e-3 and saved["bf16"] is False and saved["gradient_checkpointing"] is False


def test_lr_schedule_warms_up_linearly_then_decays_to_zero():
    factor = warmup_cosine(100, 0.05)
    assert [round(factor(s), 3) for s in range(5)] == [round((s + 1) / 6, 3) for s in range(5)]
    assert factor(5) == 1.0
    assert factor(50) < factor(20) < 1.0 and factor(99) < 0.01


@pytest.mark.parametrize("family", ["qwen2_vl"])
def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_as_an_unbroken_run(family, tmp_path):
    backbone = build_tiny_backbone(family, tmp_path / "backbone")
    processor = load_processor(backbone)
    _, examples = _color_examples(processor, 14)
    config = _config(backbone, epochs=2, batch_size=3, checkpoint_every=2, gradient_accumulation_steps=2)
    # 14 examples / batch 3 = 5 micro-batches = 3 optimizer steps an epoch (the last one has one micro-batch).
    unbroken = train_prm(config=config, examples=examples, output_dir=tmp_path / "unbroken")
    assert unbroken.total_steps == 6

    class Killed(Exception):
        pass

    def kill_after_five(step, loss, lr, speed):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train_prm(config=config, examples=examples, output_dir=tmp_path / "killed", progress=kill_after_five)
    checkpoint = latest_checkpoint(tmp_path / "killed")
    assert checkpoint.name == "checkpoint-4"
    assert json.loads((checkpoint / "config.json").read_text()) == json.loads(
        (unbroken.model_dir / "train_config.json").read_text()
    )
    assert (checkpoint / "model" / "config.json").exists() and (checkpoint / STATE_FILE).exists()
    assert not (tmp_path / "killed" / "final").exists()

    seen = []
    resumed = train_prm(config=config, examples=examples, output_dir=tmp_path / "killed",
                        progress=lambda step, *rest: seen.append(step))
    assert resumed.resumed_from == 4 and seen == [5, 6]
    assert resumed.steps == resumed.total_steps == unbroken.steps
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    for mine, theirs in zip(resumed.history, unbroken.history, strict=True):
        assert mine["lr"] == pytest.approx(theirs["lr"])
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-3, abs=1e-4)
    from safetensors.torch import load_file

    a = load_file(resumed.model_dir / "model.safetensors")
    b = load_file(unbroken.model_dir / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert sorted(p.name for p in (tmp_path / "killed").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]


def test_lora_trains_an_adapter_and_saves_a_merged_model_the_scorer_loads(tmp_path):
    backbone = build_tiny_backbone("qwen2_vl", tmp_path / "backbone")
    rows, examples = _color_examples(load_processor(backbone), 8)
    config = _config(backbone, lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2, checkpoint_every=2, epochs=2)
    result = train_prm(config=config, examples=examples, output_dir=tmp_path / "run")
    assert (latest_checkpoint(tmp_path / "run") / "model" / "adapter_config.json").exists()
    assert not any("lora" in name for name in json.dumps(json.loads((result.model_dir / "config.json").read_text())))
    assert _nll(result.model_dir, rows) != pytest.approx(_nll(backbone, rows), abs=1e-4)


def test_unlabelled_steps_stay_in_the_conversation_without_loss(tmp_path):
    processor = load_processor(build_tiny_backbone("llava", tmp_path / "b"))
    encoded = encode_conversation(
        processor, question=QUESTION, steps=["a", "b", "c"], images=[Image.new("RGB", (32, 32))],
        step_labels=[True, None, False],
    )
    labelled = (encoded.labels != IGNORE_INDEX).nonzero().flatten().tolist()
    assert labelled == [encoded.label_positions[0], encoded.label_positions[2]]
    assert len(encoded.label_positions) == 3


# --- the merged training set, from the database ---------------------------------------------------

def test_merge_policy_order_neutral_and_consensus():
    policy = MergePolicy()
    assert resolve_step_label(gold=-1, human=1, machine=1, policy=policy) == (False, "gold")
    assert resolve_step_label(gold=None, human=1, machine=-1, policy=policy) == (True, "human")
    assert resolve_step_label(gold=None, human=None, machine=-1, policy=policy) == (False, "machine")
    assert resolve_step_label(gold=None, human=None, machine=None, policy=policy) == (None, None)
    assert resolve_step_label(gold=0, human=-1, machine=None, policy=policy) == (True, "gold")
    assert resolve_step_label(gold=0, human=None, machine=None, policy=MergePolicy(neutral="skip")) == (None, None)
    strict = MergePolicy(consensus_filter=True)
    assert resolve_step_label(gold=None, human=1, machine=-1, policy=strict) == (None, None)
    assert resolve_step_label(gold=1, human=None, machine=1, policy=strict) == (True, "gold")
    assert resolve_step_label(gold=None, human=None, machine=-1, policy=strict) == (False, "machine")
    no_machine = MergePolicy(use_machine=False)
    assert resolve_step_label(gold=None, human=None, machine=1, policy=no_machine) == (None, None)


def test_value_and_advantage_machine_labels():
    scores = [0.5, 0.75, 0.75, 0.0, None, 0.25]
    imported = [None, None, None, None, -1, None]
    assert machine_labels(mc_scores=scores, imported=imported, policy=MergePolicy()) == [1, 1, 1, -1, -1, 1]
    advantage = MergePolicy(mc_label="advantage", advantage_tolerance=0.1)
    # first step: its value label; then sign of the change ("=" within 0.1); no predecessor estimate: none.
    assert machine_labels(mc_scores=scores, imported=imported, policy=advantage) == [1, 1, 0, -1, -1, None]
    assert machine_labels(mc_scores=[0.0], imported=[None], policy=MergePolicy(mc_threshold=0.5)) == [-1]


@pytest.mark.django_db
def test_training_set_merges_labels_and_splits_by_item(project, make_user):
    annotators = [make_user(f"a{i}") for i in range(3)]
    for i in range(20):
        for key in ("m1", "m2"):
            solution = make_solution(project, f"q{i}", ["s0", "s1", "s2", "s3"], key=key)
            s0, s1, s2, s3 = solution.steps.order_by("index")
            GoldLabel.objects.create(step=s0, value=-1, source=GoldLabel.Source.IMPORTED, origin="t")
            for annotator, value in zip(annotators, (1, 1, -1), strict=True):  # majority +
                HumanLabel.objects.create(step=s0, annotator=annotator, value=value)  # loses to gold
                HumanLabel.objects.create(step=s1, annotator=annotator, value=value)
            AutoLabel.objects.create(step=s1, kind="mc", source="mc", score=0.0, num_correct=0, num_total=4)
            AutoLabel.objects.create(step=s2, kind="mc", source="mc", score=0.0, num_correct=0, num_total=4)
            # s3: no label at all
    make_solution(project, "unlabelled", ["x", "y"])

    policy = MergePolicy(validation_fraction=0.25, seed=3)
    data = training_set_build(project=project, policy=policy)
    assert len(data.train) + len(data.validation) == 40  # the solution with no label is left out
    train_items = {e.item_id for e in data.train}
    validation_items = {e.item_id for e in data.validation}
    assert len(validation_items) == 5 and len(train_items) == 15 and not train_items & validation_items
    for example in data.train + data.validation:
        assert example.labels == [False, True, False, None]
        assert example.sources == ["gold", "human", "machine", None]
        assert len(example.image_files) == 1
    again = training_set_build(project=project, policy=policy)
    assert {e.item_id for e in again.validation} == validation_items
    # The split is recorded once: another seed later does not move the items (tests/test_held_out_split.py).
    other = training_set_build(project=project, policy=MergePolicy(validation_fraction=0.25, seed=4))
    assert {e.item_id for e in other.validation} == validation_items
    summary = data.summary()
    assert summary["validation"] == {"items": 5, "solutions": 10, "steps": 40, "positive": 10, "negative": 20, "unlabelled": 10}

    consensus = training_set_build(project=project, policy=MergePolicy(consensus_filter=True, validation_fraction=0.25))
    assert consensus.train[0].labels == [False, None, False, None]  # human + vs MC - on s1: dropped
    assert Item.objects.filter(project=project).count() == 21


@pytest.mark.django_db
def test_long_solutions_are_merged_to_the_step_cap_with_merged_labels(project):
    solution = make_solution(project, "long", [f"s{i}" for i in range(6)])
    for step, value in zip(solution.steps.order_by("index"), (1, 1, 1, -1, 1, 1), strict=True):
        GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="t")
    data = training_set_build(project=project, policy=MergePolicy(validation_fraction=0), max_steps_per_solution=3)
    (example,) = data.train
    assert example.steps == ["s0\n\ns1", "s2\n\ns3", "s4\n\ns5"]
    assert example.labels == [True, False, True]


# --- the "train" job ------------------------------------------------------------------------------

def _color_project(project, n: int, *, seed: int = 0):
    """n items, each an image of a red or green square with one solution whose second step claims a colour."""
    rng = random.Random(seed)
    for i in range(n):
        shown, said = rng.choice(list(COLORS)), rng.choice(list(COLORS))
        solution = make_solution(project, f"sq{i}", ["Look at the image.", f"The square is {said}."],
                                 question=QUESTION, color=COLORS[shown])
        for step, value in zip(solution.steps.order_by("index"), (1, 1 if said == shown else -1), strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="synthetic")


@pytest.mark.django_db
def test_train_job_records_the_run_and_saves_a_candidate_version(project, make_user, tmp_path):
    from prm.models import Evaluation, PRMVersion, TrainingRun
    from workers.registry import RUNNERS
    from workers.services import chunk_claim
    from workers.training_services import training_run_start

    _color_project(project, 10)
    backbone = build_tiny_backbone("qwen2_vl", tmp_path / "backbone")
    run = training_run_start(project=project, config=_config(backbone, epochs=2), user=make_user("boss"),
                             merge_policy=MergePolicy(validation_fraction=0.2))
    assert run.job.kind == "train" and run.status == TrainingRun.Status.QUEUED
    chunk = chunk_claim(chunk_id=run.job.chunks.get().id)
    RUNNERS["train"](chunk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.DONE and run.finished_at is not None
    assert run.step == run.total_steps == len(run.history) == 2 * 2  # 8 training items / batch 4, 2 epochs
    assert [entry["step"] for entry in run.history] == [1, 2, 3, 4]
    assert set(run.history[0]) == {"step", "loss", "lr", "tokens_per_s", "time"}
    assert run.config["bf16"] is False and run.merge_policy["validation_fraction"] == 0.2
    assert run.data_summary["train"]["items"] == 8 and run.data_summary["validation"]["items"] == 2
    version = PRMVersion.objects.get(created_from=run)
    assert version.status == PRMVersion.Status.CANDIDATE and version.project == project
    assert 0 <= version.metrics["macro_f1"] <= 1 and version.metrics["num_steps"] == 4
    assert Evaluation.objects.get(version=version).split == "validation"
    scores = PRMScorer(version.directory).score_steps(
        question=QUESTION, steps=["The square is red."], images=[Image.new("RGB", (56, 56), COLORS["red"])]
    )
    assert 0 < scores[0] < 1
    run.job.refresh_from_db()
    assert run.job.status == "done" and run.job.progress_done == run.job.progress_total == 4


@pytest.mark.django_db
def test_train_job_with_a_missing_backbone_fails_the_run_with_a_reason(project):
    from prm.models import TrainingRun
    from workers.errors import PermanentJobError
    from workers.registry import RUNNERS
    from workers.services import chunk_claim
    from workers.training_services import training_run_start

    _color_project(project, 2)
    run = training_run_start(project=project, config=TrainConfig(backbone="/nowhere/backbone"), merge_policy=MergePolicy())
    with pytest.raises(PermanentJobError):
        RUNNERS["train"](chunk_claim(chunk_id=run.job.chunks.get().id))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "/nowhere/backbone" in run.error


@pytest.mark.django_db
def test_only_one_live_version_per_project(project):
    from django.db import IntegrityError, transaction

    from prm.models import PRMVersion

    PRMVersion.objects.create(project=project, name="v1", backbone="b", directory="d", status="live")
    PRMVersion.objects.create(project=project, name="v2", backbone="b", directory="d", status="candidate")
    with pytest.raises(IntegrityError), transaction.atomic():
        PRMVersion.objects.create(project=project, name="v3", backbone="b", directory="d", status="live")
    PRMVersion.objects.filter(name="v1").update(status="retired")
    PRMVersion.objects.filter(name="v2").update(status="live")
    assert PRMVersion.objects.get(status="live").name == "v2"


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_trains_and_the_history_is_committed_step_by_step(celery_worker_process, tmp_path):
    from annotation.models import Project
    from prm.models import PRMVersion, TrainingRun
    from tests.conftest import wait_for
    from workers.training_services import training_run_start

    project = Project.objects.create(name="train on a worker")
    _color_project(project, 20)
    backbone = build_tiny_backbone("qwen2_vl", tmp_path / "backbone")
    run = training_run_start(project=project, config=_config(backbone, batch_size=1, epochs=2),
                             merge_policy=MergePolicy(validation_fraction=0.1))
    # Seen from this process while the worker trains: the history grows before the run ends.
    midway = wait_for(
        lambda: TrainingRun.objects.filter(pk=run.pk, status="running", step__gt=0, total_steps__gt=0)
        .exclude(step__gte=F("total_steps")).first(),
        timeout=120, interval=0.05, message="a running training run with some steps done",
    )
    assert len(midway.history) == midway.step
    done = wait_for(lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["done", "failed"]).first(),
                    timeout=180, message="the training run to finish")
    assert done.status == "done", done.error
    assert done.step == done.total_steps == len(done.history) == 2 * 18
    # The evaluate job that follows training may already have promoted the candidate.
    assert PRMVersion.objects.filter(created_from=done, status__in=["candidate", "live"]).exists()


def test_held_out_items_stay_held_out_as_new_items_arrive(db):
    from prm.training_data import _split_rank

    policy_seed = 7
    first = sorted(range(1, 101), key=lambda item_id: _split_rank(policy_seed, item_id))[:10]
    grown = sorted(range(1, 111), key=lambda item_id: _split_rank(policy_seed, item_id))[:11]
    # Ten more items (10% more data): the old held-out set is kept unless a new item outranks it.
    assert len(set(first) & set(grown)) >= 9
