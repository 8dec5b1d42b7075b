"""Several worker processes on one broker (Redis) and one database (PostgreSQL) share a job's chunks.

The policy is scripted (tests/test_mc_jobs.py) behind a real OpenAI-compatible HTTP server that
serves requests concurrently, as vLLM does, and takes DELAY seconds per request: the time a
generation server spends, which no worker waits on for another. Chunks are independent, so three
workers should finish a job in about a third of the time one takes; claims by conditional UPDATE
must still give each chunk to exactly one of them.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from annotation.models import AutoLabel, Step
from tests.factories import make_solution
from tests.test_mc_jobs import ScriptedPolicy, backend_params, finished
from workers.generation.serve import OpenAICompatibleServer
from workers.mc_services import mc_job_start
from workers.models import JobChunk

pytestmark = pytest.mark.django_db(transaction=True)

DELAY = 0.8
SOLUTIONS = 18


def test_three_workers_run_each_chunk_once_and_finish_faster_than_one(celery_worker_process, celery_workers, project):
    policy = ScriptedPolicy(delay=DELAY)
    server = OpenAICompatibleServer(policy, model="scripted", concurrent=True).start()
    try:
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
    finally:
        server.stop()
