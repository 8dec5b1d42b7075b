"""Several worker processes on one broker (Redis) and one database (PostgreSQL) share a job's chunks.

The policy is scripted (tests/test_mc_jobs.py) behind a real OpenAI-compatible HTTP server that
serves requests concurrently, as vLLM does, and takes DELAY seconds per request: the time a
generation server spends, which no worker waits on for another. Chunks are independent, so three
workers should finish a job in about a third of the time one takes; claims by conditional UPDATE
must still give each chunk to exactly one of them.

Live-PRM pre-labels are spread the same way: a tiny Qwen2-VL, built here, is the live PRM, and
each worker process loads it once and scores the chunks it claims.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db.models import Count

from annotation.models import AutoLabel, Step
from prm.core.tiny_models import build_tiny_qwen2_vl
from prm.models import PRMVersion
from tests.factories import make_solution
from tests.test_mc_jobs import ScriptedPolicy, backend_params, finished
from tests.test_prelabel import STEPS, _expected_scores
from workers.generation.serve import OpenAICompatibleServer
from workers.mc_services import mc_job_start
from workers.models import JobChunk
from workers.prelabel_services import prelabel_job_start

pytestmark = pytest.mark.django_db(transaction=True)

DELAY = 0.8
SOLUTIONS = 18
PRELABEL_SOLUTIONS = 12


@pytest.fixture
def scripted_server(settings, monkeypatch):
    """The scripted policy's server, in the operator's server list before any worker process starts."""
    import json

    policy = ScriptedPolicy(delay=DELAY)
    server = OpenAICompatibleServer(policy, model="scripted", concurrent=True).start()
    servers = {"scripted": {"base_url": server.base_url, "model": "scripted"}}
    settings.STEPMARK_GENERATION_SERVERS = servers
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(servers))
    yield policy, server
    server.stop()


def test_three_workers_run_each_chunk_once_and_finish_faster_than_one(
    scripted_server, celery_worker_process, celery_workers, project
):
    policy, server = scripted_server
    for i in range(SOLUTIONS):
        make_solution(project, f"q{i}", [f"q{i} rate=1.0", f"q{i} rate=0.5"])

    def run(source: str):
        asked_before = len(policy.requests)
        started = time.monotonic()
        job = mc_job_start(project=project, backend=backend_params(server), strategy="exhaustive", k=2,
                           solutions_per_chunk=1, source=source)
        job = finished(job, timeout=240)
        seconds = time.monotonic() - started
        assert job.status == "done", job.error
        return job, seconds, [r.continuation for r in policy.requests[asked_before:]]

    one_job, one_s, _ = run("one-worker")
    celery_workers(2)  # three processes now, all on the same broker and database
    job, three_s, asked = run("three-workers")

    chunks = list(JobChunk.objects.filter(job=job))
    assert len(chunks) == SOLUTIONS
    assert all(chunk.status == "done" and chunk.attempts == 1 for chunk in chunks), "a chunk ran twice"
    by_worker = Counter(chunk.claimed_by for chunk in chunks)
    assert len(by_worker) == 3, f"chunks were not spread over the three workers: {by_worker}"
    # Every prefix was continued exactly once, and every step got exactly one label of this run.
    counted = Counter(asked)
    assert len(counted) == 2 * SOLUTIONS and set(counted.values()) == {1}, counted.most_common(3)
    assert AutoLabel.objects.filter(kind="mc", source="three-workers").count() == Step.objects.count() == 2 * SOLUTIONS
    assert job.counts["solutions"] == SOLUTIONS and job.progress_done == SOLUTIONS

    print(f"\n{SOLUTIONS} chunks of {DELAY}s generation: 1 worker {one_s:.1f}s, 3 workers {three_s:.1f}s, "
          f"speed-up {one_s / three_s:.2f}x; chunks per worker {sorted(by_worker.values())}")
    assert three_s < 0.6 * one_s, f"three workers took {three_s:.1f}s, one took {one_s:.1f}s"


def test_three_workers_pre_label_each_chunk_once_with_the_live_prm(
    celery_worker_process, celery_workers, project, tmp_path
):
    """No speed check: scoring is CPU-bound here, and three processes share the machine's cores."""
    version = PRMVersion.objects.create(project=project, name="tiny-live", backbone="tiny",
                                        directory=str(build_tiny_qwen2_vl(tmp_path / "prm")), status="live")
    solutions = [make_solution(project, f"q{i}", STEPS[i % len(STEPS)], color=(20 * i, 100, 200))
                 for i in range(PRELABEL_SOLUTIONS)]
    total_steps = Step.objects.count()
    assert total_steps == sum(len(STEPS[i % len(STEPS)]) for i in range(PRELABEL_SOLUTIONS))
    others = celery_workers(2)  # three idle processes on the same broker and database before the job starts

    job = finished(prelabel_job_start(project=project, solutions_per_chunk=1), timeout=240)
    assert job.status == "done", job.error

    chunks = list(JobChunk.objects.filter(job=job))
    assert len(chunks) == PRELABEL_SOLUTIONS
    assert all(chunk.status == "done" and chunk.attempts == 1 for chunk in chunks), "a chunk ran twice"
    chunked = sorted(sid for chunk in chunks for sid in chunk.params["solution_ids"])
    assert chunked == sorted(solution.pk for solution in solutions)  # each solution in exactly one chunk
    by_worker = Counter(chunk.claimed_by for chunk in chunks)
    nodes = {worker.node for worker in (celery_worker_process, *others)}
    assert set(by_worker) == nodes, f"chunks were not spread over the three workers: {by_worker}"

    # Every step has exactly one PRM label, from the live version, and it is the score that version gives.
    labels = AutoLabel.objects.filter(kind="prm")
    assert set(labels.values_list("source", flat=True)) == {version.name}
    per_step = Counter(dict(labels.values("step").annotate(n=Count("pk")).values_list("step", "n")))
    assert len(per_step) == total_steps and set(per_step.values()) == {1}
    stored = {(label.step.solution_id, label.step.index): label.score for label in labels.select_related("step")}
    for solution_id, scores in _expected_scores(version.directory, solutions).items():
        for index, score in enumerate(scores):
            assert stored[(solution_id, index)] == pytest.approx(score, abs=1e-5)

    assert job.counts == {"solutions": PRELABEL_SOLUTIONS, "steps_labelled": total_steps}
    assert job.progress_done == job.progress_total == PRELABEL_SOLUTIONS == sum(chunk.size for chunk in chunks)
    print(f"\n{PRELABEL_SOLUTIONS} pre-label chunks, chunks per worker {sorted(by_worker.values())}")
