"""Live-PRM pre-labels, run by a real Celery worker with a tiny Qwen2-VL registered as the live PRM."""

from __future__ import annotations

import io

import pytest
from django.db import transaction
from PIL import Image as PILImage

from annotation.models import AutoLabel, ItemImage, Project, Role, Solution
from annotation.services.queue import next_assignment
from prm.core.scoring import PRMScorer
from prm.core.tiny_models import build_tiny_qwen2_vl
from prm.models import PRMVersion
from tests.conftest import wait_for
from tests.factories import add_member, make_solution
from workers.models import Job, JobChunk
from workers.prelabel_services import NoLivePRM, prelabel_job_start
from workers.priority import StepEvidence, solution_priority

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [
    ["Look at the image. The figure shows a circle with radius 3.", "So the answer is 12."],
    ["We compute 2 + 3 = 5.", "Then 5 - 1 = 4.", "The final answer is \\boxed{4}."],
    ["Therefore x + y = 7 and x - y = 1, so x = 4 and y = 3."],
]


@pytest.fixture(scope="module")
def tiny_prm_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-prm"))


def finished(job: Job) -> Job:
    return wait_for(
        lambda: Job.objects.filter(pk=job.pk, status__in=["done", "failed", "cancelled"]).first(),
        timeout=90,
        message=f"job {job.pk} to finish",
    )


def _project_with_solutions() -> tuple[Project, list[Solution]]:
    project = Project.objects.create(name="prelabel")
    solutions = []
    for i in range(3):
        for j, steps in enumerate(STEPS):
            solution = make_solution(project, f"q{i}", steps, key=f"m{j}", color=(40 * i, 100, 200))
            solutions.append(solution)
    Solution.objects.filter(pk=solutions[1].pk).update(is_correct=False)
    return project, solutions


def _expected_scores(directory, solutions: list[Solution]) -> dict[int, list[float]]:
    scorer = PRMScorer(directory)
    expected = {}
    for solution in solutions:
        link = ItemImage.objects.select_related("image").get(item=solution.item, position=0)
        with link.image.file.open("rb") as handle:
            image = PILImage.open(io.BytesIO(handle.read())).convert("RGB")
        steps = [step.text for step in solution.steps.order_by("index")]
        expected[solution.pk] = scorer.score_steps(question=solution.item.question, steps=steps, images=[image])
    return expected


def test_prelabel_job_stores_prm_scores_once_and_reorders_the_queue(celery_worker_process, tiny_prm_dir, make_user):
    project, solutions = _project_with_solutions()
    version = PRMVersion.objects.create(
        project=project, name="tiny-prm-v1", backbone="tiny", directory=str(tiny_prm_dir), status="live"
    )
    job = finished(prelabel_job_start(project=project, solutions_per_chunk=4))
    assert job.status == "done", job.error
    assert job.chunks.count() == 3 and job.progress_done == job.progress_total == len(solutions)
    total_steps = sum(len(steps) for steps in STEPS) * 3
    assert job.counts == {"solutions": len(solutions), "steps_labelled": total_steps}

    labels = AutoLabel.objects.filter(kind="prm", source=version.name)
    assert labels.count() == total_steps
    stored = {(label.step.solution_id, label.step.index): label.score for label in labels.select_related("step")}
    assert len({round(score, 4) for score in stored.values()}) > 10, "scores must differ for the comparison to mean anything"
    for solution_id, scores in _expected_scores(tiny_prm_dir, solutions).items():
        for index, score in enumerate(scores):
            assert stored[(solution_id, index)] == pytest.approx(score, abs=1e-5)

    # Rerunning replaces the labels, never duplicates them.
    rerun = finished(prelabel_job_start(project=project))
    assert rerun.status == "done", rerun.error
    assert AutoLabel.objects.filter(kind="prm").count() == total_steps

    # Priorities follow the stored PRM scores; the queue hands out the highest first.
    priorities = dict(Solution.objects.values_list("pk", "priority"))
    wrong = solutions[1]
    wrong_scores = [stored[(wrong.pk, i)] for i in range(len(STEPS[1]))]
    assert priorities[wrong.pk] == pytest.approx(
        solution_priority([StepEvidence(prm_score=s) for s in wrong_scores], is_correct=False)
    )
    assert len(set(priorities.values())) > 1
    annotator = make_user("ann")
    add_member(project, annotator, Role.ANNOTATOR)
    assert next_assignment(project=project, annotator=annotator).solution_id == max(priorities, key=priorities.get)


def test_without_a_live_prm_the_job_refuses_to_start_and_a_running_one_fails_at_once(celery_worker_process, tiny_prm_dir):
    project, solutions = _project_with_solutions()
    with pytest.raises(NoLivePRM, match="has no live PRM version"):
        prelabel_job_start(project=project)
    assert not Job.objects.exists()

    # The live version is retired after the job was started: the worker fails it on the first try.
    version = PRMVersion.objects.create(
        project=project, name="tiny-prm-v2", backbone="tiny", directory=str(tiny_prm_dir), status="live"
    )
    with transaction.atomic():  # the chunk is enqueued on commit, after the retirement
        job = prelabel_job_start(project=project, solutions_per_chunk=100)
        PRMVersion.objects.filter(pk=version.pk).update(status="retired")
    job = finished(job)
    assert job.status == "failed"
    assert "has no live PRM version" in job.error and project.name in job.error
    assert JobChunk.objects.get(job=job).attempts == 1
    assert not AutoLabel.objects.filter(kind="prm").exists()
