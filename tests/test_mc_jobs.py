"""Monte Carlo labelling and solution sampling jobs, run end to end by a real Celery worker.

The policy is a real back end behind a real OpenAI-compatible HTTP server, but scripted: the
last step of each prefix says how many completions should end in the right answer ("rate=0.5"),
so the expected counts are known exactly. (Tiny random models never answer right.)
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from annotation.models import AutoLabel, Item, Solution, Step
from tests.conftest import wait_for
from tests.factories import make_solution, png_bytes
from workers.errors import TransientJobError
from workers.generation.base import Completion, GenerationBackend
from workers.generation.serve import OpenAICompatibleServer
from workers.mc_services import mc_job_start, sample_job_start
from workers.models import Job, JobChunk
from workers.services import job_enqueue

pytestmark = pytest.mark.django_db(transaction=True)

RIGHT, WRONG = "\n\nSo the answer is \\boxed{5}.", "\n\nSo the answer is \\boxed{4}."
SAMPLED_RESPONSES = [
    "Look at the figure: 2 and 3.\n\nAdd them: 2 + 3 = 5.\n\nThe answer is \\boxed{5}.",
    "Look at the figure.\n\nSubtract: 3 - 2 = 1.\n\n\\boxed{1}",
]


class ScriptedPolicy(GenerationBackend):
    """Continuations: the first round(rate * n) of the n completions are right. Fresh prompts:
    alternately a right and a wrong three-step solution. Records what it was asked."""

    name = "scripted"

    def __init__(self, *, delay: float = 0.0, failures: int = 0):
        self.delay = delay
        self.failures = failures  # the first calls fail as an overloaded server does (HTTP 503)
        self.requests = []
        self.lock = threading.Lock()

    def generate(self, requests):
        time.sleep(self.delay)
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise TransientJobError("server overloaded")
            self.requests.extend(requests)
        outputs = []
        for request in requests:
            if request.continuation:
                rate = float(re.findall(r"rate=([\d.]+)", request.continuation)[-1])
                right = round(rate * request.n)
                # "cut=N": the last N completions hit the token limit.
                cut = int((re.findall(r"cut=(\d+)", request.continuation.rsplit("\n\n", 1)[-1]) or ["0"])[-1])
                outputs.append([
                    Completion(RIGHT if j < right else WRONG, truncated=j >= request.n - cut) for j in range(request.n)
                ])
            else:
                outputs.append([Completion(SAMPLED_RESPONSES[j % 2]) for j in range(request.n)])
        return outputs


@pytest.fixture
def policy_server():
    policy = ScriptedPolicy()
    server = OpenAICompatibleServer(policy, model="scripted").start()
    server.policy = policy
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _listed_servers(policy_server, settings, monkeypatch):
    """The operator's server list naming the scripted policy, set before any worker process starts."""
    import json

    servers = {
        "scripted": {"base_url": policy_server.base_url, "model": "scripted"},
        "down": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},  # nothing listens on port 9
    }
    settings.STEPMARK_GENERATION_SERVERS = servers
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(servers))


def backend_params(server) -> dict:
    return {"backend": "openai", "server": "scripted", "model": "scripted", "timeout": 30}


def finished(job: Job, timeout: float = 60) -> Job:
    return wait_for(
        lambda: Job.objects.filter(pk=job.pk, status__in=["done", "failed", "cancelled"]).first(),
        timeout=timeout,
        message=f"job {job.pk}",
    )


def mc_counts(project) -> dict[tuple[str, int], tuple[int | None, int | None]]:
    rows = AutoLabel.objects.filter(step__solution__item__project=project, kind="mc").values_list(
        "step__solution__item__external_id", "step__index", "num_correct", "num_total"
    )
    return {(external_id, index): (right, total) for external_id, index, right, total in rows}


def test_mc_job_stores_exact_counts_once_and_reruns_add_nothing(
    celery_worker_process, policy_server, project
):
    rates = [["rate=1.0", "rate=0.5", "rate=0.0"], ["rate=0.75", "rate=0.25"], ["rate=0.0", "rate=1.0"]] * 2
    solutions = [make_solution(project, f"q{i}", steps) for i, steps in enumerate(rates)]
    job = mc_job_start(
        project=project,
        backend=backend_params(policy_server),
        strategy="exhaustive",
        k=4,
        solutions_per_chunk=2,
    )
    assert job.chunks.count() == 3 and job.progress_total == 6
    job = finished(job)
    assert job.status == "done", job.error
    assert job.progress_done == job.progress_total == 6
    assert job.counts == {
        "solutions": 6, "steps_labelled": 14, "rollouts": 14 * 4, "truncated": 0, "skipped_no_answer": 0
    }
    expected = {
        (f"q{i}", j): (round(float(text[5:]) * 4), 4)
        for i, steps in enumerate(rates)
        for j, text in enumerate(steps)
    }
    assert mc_counts(project) == expected
    label = AutoLabel.objects.get(step__solution=solutions[0], step__index=1, kind="mc")
    assert (label.source, label.score, label.value, label.estimate) == ("scripted", 0.5, None, "exhaustive")

    # The worker continued the right prefixes, with the item's image, under the policy prompt.
    asked = {r.continuation for r in policy_server.policy.requests}
    assert "rate=1.0\n\nrate=0.5" in asked and "rate=1.0\n\nrate=0.5\n\nrate=0.0" in asked
    first = policy_server.policy.requests[0]
    assert first.images == [png_bytes()] and "\\boxed" in first.messages[0]["content"][-1]["text"]

    # Re-enqueueing a finished job and starting the same labelling again add nothing.
    asked_before = len(policy_server.policy.requests)
    assert job_enqueue(job=job) == 0
    again = finished(
        mc_job_start(project=project, backend=backend_params(policy_server), strategy="exhaustive", k=4)
    )
    assert again.status == "done" and again.counts["solutions"] == 0
    assert len(policy_server.policy.requests) == asked_before
    assert AutoLabel.objects.filter(kind="mc").count() == 14

    # Overwriting with the adaptive strategy updates the same rows: stop at the first right round.
    adaptive = finished(
        mc_job_start(
            project=project,
            backend=backend_params(policy_server),
            strategy="adaptive",
            k=8,
            round_size=2,
            overwrite=True,
        )
    )
    assert adaptive.status == "done", adaptive.error
    assert AutoLabel.objects.filter(kind="mc").count() == 14
    counts = mc_counts(project)
    assert counts[("q0", 0)] == (2, 2) and counts[("q0", 1)] == (1, 2) and counts[("q0", 2)] == (0, 8)
    assert counts[("q1", 0)] == (2, 2) and counts[("q2", 0)] == (0, 8)
    assert adaptive.counts["rollouts"] < 14 * 8
    # 2/2 after the first right round is a stopping rule's count, not mc: no score, only the value label.
    label = AutoLabel.objects.get(step__solution=solutions[0], step__index=1, kind="mc")
    assert (label.score, label.value, label.estimate) == (None, 1, "adaptive")
    assert set(AutoLabel.objects.filter(kind="mc").values_list("score", flat=True)) == {None}
    assert AutoLabel.objects.get(step__solution=solutions[0], step__index=2, kind="mc").value == -1


def test_early_stop_leaves_later_steps_unsampled_and_truncated_rollouts_unjudged(
    celery_worker_process, policy_server, project
):
    solution = make_solution(project, "q0", ["rate=1.0", "rate=0.5 cut=2", "rate=0.0", "rate=1.0"])
    job = finished(
        mc_job_start(project=project, backend=backend_params(policy_server), k=4, early_stop=True)
    )
    assert job.status == "done", job.error
    # Step 1: 2 right, 2 cut by the token limit (judged neither way); step 2 has mc = 0: step 3 is
    # never asked for and gets no MC estimate.
    assert mc_counts(project) == {("q0", 0): (4, 4), ("q0", 1): (2, 2), ("q0", 2): (0, 4)}
    assert job.counts == {"solutions": 1, "steps_labelled": 3, "rollouts": 12, "truncated": 2, "skipped_no_answer": 0}
    assert not any("rate=0.0\n\nrate=1.0" in r.continuation for r in policy_server.policy.requests)
    assert not AutoLabel.objects.filter(step__solution=solution, step__index=3).exists()
    # A rerun does not sample the early-stopped solution again.
    again = finished(mc_job_start(project=project, backend=backend_params(policy_server), k=4, early_stop=True))
    assert again.counts["solutions"] == 0


@pytest.fixture
def short_lease(monkeypatch, settings):
    # The worker process reads it from its environment; chunks of a killed worker come back after 2 s.
    monkeypatch.setenv("STEPMARK_CHUNK_LEASE_SECONDS", "2")
    settings.STEPMARK_CHUNK_LEASE_SECONDS = 2


def test_killed_worker_mid_job_resumes_without_losing_or_duplicating(
    short_lease, celery_worker_process, project
):
    policy = ScriptedPolicy(delay=0.8)  # a chunk runs for seconds: the poll below cannot miss it
    server = OpenAICompatibleServer(policy, model="scripted").start()
    try:
        for i in range(6):
            make_solution(project, f"q{i}", ["rate=1.0", "rate=0.0"])
        job = mc_job_start(
            project=project, backend=backend_params(server), strategy="exhaustive", k=2, solutions_per_chunk=1
        )
        try:
            wait_for(
                lambda: (
                    job.chunks.filter(status="done").count() >= 2 and job.chunks.filter(status="running").exists()
                ),
                timeout=120,  # a loaded machine starts the worker slowly
                interval=0.02,  # a chunk can finish between two slower looks
                message="two chunks done and one running",
            )
        except AssertionError as exc:
            stored = Job.objects.get(pk=job.pk)
            states = list(job.chunks.order_by("pk").values_list("status", "attempts"))
            raise AssertionError(f"{exc}: job {stored.status} {stored.error!r}, chunks {states}") from None
        celery_worker_process.kill()
        done_before = {c.pk: c.finished_at for c in job.chunks.filter(status="done")}
        interrupted = job.chunks.get(status="running")
        assert 2 <= len(done_before) < 6
        assert Job.objects.get(pk=job.pk).status == "running"

        celery_worker_process.restart()
        time.sleep(2.5)  # the killed worker's running chunk is claimable once its lease expires
        job_enqueue(job=job)
        job = finished(job)
        assert job.status == "done", job.error
        for chunk in JobChunk.objects.filter(pk__in=done_before):
            assert chunk.finished_at == done_before[chunk.pk] and chunk.attempts == 1, (
                "a finished chunk ran again"
            )
        interrupted.refresh_from_db()
        assert interrupted.status == "done" and interrupted.attempts == 2  # taken over after its lease
        assert job.counts["solutions"] == 6 and job.progress_done == job.progress_total == 6
        assert AutoLabel.objects.filter(kind="mc").count() == Step.objects.count() == 12
        assert set(mc_counts(project).values()) == {(2, 2), (0, 2)}
    finally:
        server.stop()


def test_bad_model_path_or_unreachable_server_fails_the_job_at_once(celery_worker_process, project, tmp_path):
    for i in range(3):
        make_solution(project, f"q{i}", ["rate=1.0"])
    started = time.monotonic()
    job = finished(
        mc_job_start(
            project=project,
            backend={"backend": "transformers", "model_path": str(tmp_path / "no-model")},
            solutions_per_chunk=1,
        )
    )
    assert job.status == "failed"
    assert "PermanentJobError" in job.error and "no-model" in job.error and "not a model folder" in job.error
    assert time.monotonic() - started < 20, "a permanent error must not be retried with backoff"
    # The other chunks never started: the job stopped at its first failure.
    assert job.chunks.filter(status="pending").count() == 2

    job = finished(
        mc_job_start(
            project=project, backend={"backend": "openai", "server": "down", "model": "m"}
        )
    )
    assert job.status == "failed" and "unreachable" in job.error
    assert not AutoLabel.objects.exists()


def test_sampling_job_fills_items_up_to_n_solutions_idempotently(
    celery_worker_process, policy_server, project
):
    for i in range(3):
        Item.objects.create(project=project, external_id=f"item{i}", question="What is 2 + 3?", answer="5")
    policy_server.policy.failures = 1  # the first call gets HTTP 503: the chunk retries with backoff
    job = finished(
        sample_job_start(
            project=project, backend=backend_params(policy_server), n=2, policy="scripted", items_per_chunk=2
        )
    )
    assert job.status == "done", job.error
    assert job.counts == {"items": 3, "solutions": 6, "correct": 3, "empty": 0, "truncated": 0}
    assert sorted(job.chunks.values_list("attempts", flat=True)) == [1, 2]
    right = Solution.objects.get(item__external_id="item0", key="scripted-sample-0")
    assert (right.policy_model, right.final_answer, right.is_correct) == ("scripted", "5", True)
    assert list(right.steps.order_by("index").values_list("text", flat=True)) == SAMPLED_RESPONSES[0].split(
        "\n\n"
    )
    wrong = Solution.objects.get(item__external_id="item0", key="scripted-sample-1")
    assert (wrong.final_answer, wrong.is_correct) == ("1", False)

    # Nothing is missing: the rerun samples nothing. With n=3 only the third sample is drawn.
    asked = len(policy_server.policy.requests)
    assert (
        finished(
            sample_job_start(project=project, backend=backend_params(policy_server), n=2, policy="scripted")
        ).status
        == "done"
    )
    assert len(policy_server.policy.requests) == asked and Solution.objects.count() == 6
    more = finished(
        sample_job_start(project=project, backend=backend_params(policy_server), n=3, policy="scripted")
    )
    assert more.counts["solutions"] == 3 and Solution.objects.count() == 9
    assert sorted(Solution.objects.filter(item__external_id="item2").values_list("key", flat=True)) == [
        "scripted-sample-0",
        "scripted-sample-1",
        "scripted-sample-2",
    ]
    assert all(r.n == 1 for r in policy_server.policy.requests[asked:])


def test_mc_job_with_a_local_transformers_model(celery_worker_process, project, tmp_path):
    from prm.core.tiny_models import build_tiny_qwen2_vl

    model_dir = build_tiny_qwen2_vl(tmp_path / "tiny-policy")
    for i in range(2):
        make_solution(project, f"q{i}", ["2 + 3 = 5.", "So \\boxed{5}."])
    backend = {"backend": "transformers", "model_path": str(model_dir), "device": "cpu", "batch_size": 8}
    job = finished(
        mc_job_start(project=project, backend=backend, k=2, sampling={"max_new_tokens": 3, "seed": 1}),
        timeout=120,
    )
    assert job.status == "done", job.error
    # A random tiny model never ends within 3 tokens: every rollout is truncated, none is judged,
    # and no step gets an estimate made of cut-off answers.
    assert job.counts["rollouts"] == 8 and job.counts["truncated"] == 8
    assert not AutoLabel.objects.filter(kind="mc", source="tiny-policy").exists()
