"""The PRM registry: held-out gold evaluation, gated promotion, promotion by hand and rollback, the page.

"Better" and "worse" are real models scored on real held-out data: a tiny Qwen2-VL with random
weights (it sits below chance on this task) and the same backbone trained a little on the task.
Each held-out item is a red or green square with two solutions, one claiming the right colour and
one the wrong one (gold on every step; outcome known), so step F1, first-error F1 and Best-of-N all
have data.
"""

from __future__ import annotations

import random

import pytest
import torch
from django.core.exceptions import PermissionDenied
from PIL import Image

from annotation.models import GoldLabel, Item, Role
from prm.core.conversation import encode_conversation, label_token_ids, load_processor
from prm.core.merge import MergePolicy
from prm.core.tiny_models import build_tiny_backbone
from prm.core.training import train_prm
from prm.core.training_config import TrainConfig
from prm.evaluation import HEADLINE_METRIC, HELD_OUT_SPLIT, version_held_out_set
from prm.models import Evaluation, PRMVersion, PromotionDecision, TrainingRun
from prm.registry import version_evaluate, version_promote, version_promote_if_better, version_rollback
from tests.factories import add_member, make_solution

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40)}
QUESTION = "What colour is the square?"
NUM_ITEMS = 16
POLICY = MergePolicy(validation_fraction=0.5, seed=0)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    torch.set_num_threads(2)
    return build_tiny_backbone("qwen2_vl", tmp_path_factory.mktemp("backbone"), seed=0)


@pytest.fixture(scope="module")
def trained(backbone, tmp_path_factory):
    """The backbone trained for a few steps on fresh colour examples (none of them in the database)."""
    rng = random.Random(1)
    processor = load_processor(backbone)
    label_ids = label_token_ids(processor)
    examples = []
    for _ in range(32):
        shown, said = rng.choice(list(COLORS)), rng.choice(list(COLORS))
        examples.append(encode_conversation(
            processor, question=QUESTION, steps=["Look at the image.", f"The square is {said}."],
            images=[Image.new("RGB", (56, 56), COLORS[shown])], step_labels=[True, said == shown], label_ids=label_ids,
        ))
    config = TrainConfig(backbone=str(backbone), learning_rate=1e-3, weight_decay=0.0, epochs=2, batch_size=8,
                         warmup_ratio=0.1, checkpoint_every=1000, seed=0)
    return train_prm(config=config, examples=examples, output_dir=tmp_path_factory.mktemp("trained")).model_dir


def color_items(project, n: int = NUM_ITEMS) -> None:
    """n squares, each with a right and a wrong solution; gold on every step, outcome known."""
    rng = random.Random(7)
    for i in range(n):
        shown = rng.choice(list(COLORS))
        other = next(c for c in COLORS if c != shown)
        for said in (shown, other):
            solution = make_solution(project, f"square-{i}", ["Look at the image.", f"The square is {said}."],
                                     key=said, question=QUESTION, color=COLORS[shown])
            solution.final_answer, solution.is_correct = said, said == shown
            solution.save(update_fields=["final_answer", "is_correct"])
            for step, value in zip(solution.steps.order_by("index"), (1, 1 if said == shown else -1), strict=True):
                GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="test")
        Item.objects.filter(project=project, external_id=f"square-{i}").update(data_source=("even", "odd")[i % 2])


def register(project, name: str, directory, *, status: str = PRMVersion.Status.CANDIDATE) -> PRMVersion:
    """A version whose split is POLICY's (recorded on a finished run, as training records it)."""
    run = TrainingRun.objects.create(project=project, merge_policy=POLICY.to_dict(), status=TrainingRun.Status.DONE)
    version = PRMVersion.objects.create(project=project, name=name, backbone="tiny", directory=str(directory), status=status)
    PRMVersion.objects.filter(pk=version.pk).update(created_from=run)  # no evaluate job: these tests call the registry
    version.refresh_from_db()
    return version


@pytest.mark.django_db
def test_evaluation_scores_the_held_out_gold_and_stores_every_metric(project, backbone, trained):
    color_items(project)
    version = register(project, "trained", trained)
    held_out = version_held_out_set(version)
    assert len(held_out.items) == NUM_ITEMS // 2  # validation_fraction 0.5 of the items, by item
    assert all(len(item.solutions) == 2 for item in held_out.items)

    evaluation = version_evaluate(version=version)
    metrics = evaluation.metrics
    assert evaluation.split == HELD_OUT_SPLIT and metrics["items"] == NUM_ITEMS // 2
    assert metrics["gold_steps"] == metrics["num_steps"] == 4 * (NUM_ITEMS // 2)
    assert 0.8 < metrics["macro_f1"] <= 1.0 and metrics["best_macro_f1"] >= metrics["macro_f1"]
    assert set(metrics["per_source"]) == {"even", "odd"}  # macro F1 per data source too
    assert metrics["first_error"]["num_erroneous"] == metrics["first_error"]["num_correct"] == NUM_ITEMS // 2
    bon = metrics["best_of_n"]
    assert bon["num_questions"] == NUM_ITEMS // 2 and bon["pass_at_1"] == 0.5 and bon["oracle"] == 1.0
    assert bon["prm_accuracy"] > 0.7  # the trained PRM mostly picks the solution that names the right colour
    version.refresh_from_db()
    assert version.metrics[HEADLINE_METRIC] == metrics["macro_f1"]
    assert version.metrics["gold_evaluation_id"] == evaluation.pk

    untrained = version_evaluate(version=register(project, "untrained", backbone)).metrics
    assert untrained["fingerprint"] == metrics["fingerprint"]  # the same held-out set
    assert untrained["macro_f1"] < 0.5 < metrics["macro_f1"]


@pytest.mark.django_db
def test_first_version_needs_to_beat_chance_then_a_worse_one_is_refused_and_a_better_one_granted(
    project, backbone, trained
):
    color_items(project)
    random_init = register(project, "random-init", backbone)
    refused = version_promote_if_better(version=random_init)
    assert refused.action == PromotionDecision.Action.KEPT_CANDIDATE and "chance" in refused.reason
    random_init.refresh_from_db()
    assert random_init.status == PRMVersion.Status.CANDIDATE

    good = register(project, "trained", trained)
    granted = version_promote_if_better(version=good)
    assert granted.action == PromotionDecision.Action.PROMOTED and granted.previous_live is None
    good.refresh_from_db()
    assert good.status == PRMVersion.Status.LIVE and good.promoted_at is not None

    worse = register(project, "random-init-again", backbone)
    decision = version_promote_if_better(version=worse, margin=0.01)
    assert decision.action == PromotionDecision.Action.KEPT_CANDIDATE
    assert decision.previous_live == good and decision.candidate_metric < decision.live_metric
    # Even an equal model must beat the live one by the margin.
    equal = register(project, "trained-copy", trained)
    tie = version_promote_if_better(version=equal, margin=0.01)
    assert tie.action == PromotionDecision.Action.KEPT_CANDIDATE
    assert tie.candidate_metric == pytest.approx(tie.live_metric)
    assert list(PRMVersion.objects.filter(project=project, status="live")) == [good]
    # The live version was measured once on this held-out set and reused, not scored again each time.
    assert Evaluation.objects.filter(version=good, split=HELD_OUT_SPLIT).count() == 1


@pytest.mark.django_db
def test_a_better_candidate_replaces_a_worse_live_version(project, backbone, trained, make_user):
    color_items(project)
    admin = make_user("boss")
    add_member(project, admin, Role.ADMIN)
    weak = register(project, "random-init", backbone)
    version_promote(version=weak, user=admin)  # by hand: the automatic gate would refuse it
    strong = register(project, "trained", trained)
    decision = version_promote_if_better(version=strong)
    assert decision.action == PromotionDecision.Action.PROMOTED and decision.previous_live == weak
    assert decision.candidate_metric - decision.live_metric >= 0.01
    weak.refresh_from_db()
    strong.refresh_from_db()
    assert (weak.status, strong.status) == (PRMVersion.Status.RETIRED, PRMVersion.Status.LIVE)


@pytest.mark.django_db
def test_manual_promote_and_rollback_keep_one_live_version_and_record_decisions(project, make_user):
    admin, annotator = make_user("boss"), make_user("ann")
    add_member(project, admin, Role.ADMIN)
    add_member(project, annotator, Role.ANNOTATOR)
    v1, v2, v3 = (PRMVersion.objects.create(project=project, name=f"v{i}", backbone="b", directory="d") for i in (1, 2, 3))

    with pytest.raises(PermissionDenied):
        version_promote(version=v1, user=annotator)
    version_promote(version=v1, user=admin)
    version_promote(version=v2, user=admin)
    version_promote(version=v3, user=admin)
    status = lambda: dict(PRMVersion.objects.filter(project=project).values_list("name", "status"))  # noqa: E731
    assert status() == {"v1": "retired", "v2": "retired", "v3": "live"}

    with pytest.raises(PermissionDenied):
        version_rollback(project=project, user=annotator)
    back = version_rollback(project=project, user=admin)
    assert back.action == PromotionDecision.Action.ROLLBACK and back.version == v2 and back.previous_live == v3
    assert status() == {"v1": "retired", "v2": "live", "v3": "retired"}
    # Rolling back again re-lives the most recently retired version: v3, retired by the rollback.
    version_rollback(project=project, user=admin)
    assert status() == {"v1": "retired", "v2": "retired", "v3": "live"}
    assert PromotionDecision.objects.filter(project=project).count() == 5
    assert all(d.decided_by == admin for d in PromotionDecision.objects.filter(project=project))


@pytest.mark.django_db
def test_the_train_job_hands_its_candidate_to_an_evaluate_job_that_promotes_it(project, backbone):
    from workers.models import Job
    from workers.registry import RUNNERS
    from workers.services import chunk_claim
    from workers.training_services import training_run_start

    color_items(project, 24)
    config = TrainConfig(backbone=str(backbone), learning_rate=1e-3, weight_decay=0.0, epochs=3, batch_size=8,
                         warmup_ratio=0.1, checkpoint_every=1000)
    run = training_run_start(project=project, config=config, merge_policy=POLICY)
    RUNNERS["train"](chunk_claim(chunk_id=run.job.chunks.get().id))
    candidate = PRMVersion.objects.get(created_from=run)
    job = Job.objects.get(kind=Job.Kind.EVALUATE, project=project)
    assert job.params["version_id"] == candidate.pk and job.status == Job.Status.QUEUED

    counts = RUNNERS["evaluate"](chunk_claim(chunk_id=job.chunks.get().id))
    job.refresh_from_db()
    candidate.refresh_from_db()
    decision = PromotionDecision.objects.get(version=candidate)
    assert job.status == Job.Status.DONE and counts["decision"] == decision.action
    # No live version yet: the candidate goes live exactly when it beats chance on the held-out gold.
    beats_chance = candidate.metrics[HEADLINE_METRIC] > 0.5
    assert decision.action == ("promoted" if beats_chance else "kept_candidate")
    assert candidate.status == ("live" if beats_chance else "candidate")
    assert beats_chance, f"3 epochs should beat chance here, got {candidate.metrics[HEADLINE_METRIC]:.3f}"


@pytest.mark.django_db
def test_registry_page_shows_versions_chart_and_admin_buttons(client, project, make_user):
    admin, annotator, outsider = make_user("boss"), make_user("ann"), make_user("stranger")
    add_member(project, admin, Role.ADMIN)
    add_member(project, annotator, Role.ANNOTATOR)
    live = PRMVersion.objects.create(project=project, name="v-live", backbone="b", directory="d", status="live",
                                     metrics={HEADLINE_METRIC: 0.71})
    PRMVersion.objects.create(project=project, name="v-cand", backbone="b", directory="d", metrics={HEADLINE_METRIC: 0.64})
    url = f"/projects/{project.id}/prm/versions/"

    client.force_login(admin)
    html = client.get(url).content.decode()
    assert '<svg' in html and "Held-out macro F1 per PRM version" in html
    assert "v-live (live): 0.710" in html and "v-cand: 0.640" in html  # bar tooltips
    assert "live-marker" in html and "Make live" in html and "Roll back" in html
    response = client.post(f"/projects/{project.id}/prm/versions/{PRMVersion.objects.get(name='v-cand').pk}/promote/")
    assert response.status_code == 302
    live.refresh_from_db()
    assert live.status == PRMVersion.Status.RETIRED

    client.force_login(annotator)
    html = client.get(url).content.decode()
    assert "Held-out macro F1" in html and "Make live" not in html
    assert client.post(f"/projects/{project.id}/prm/versions/rollback/").status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404
