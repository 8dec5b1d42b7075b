"""Jobs run by a real Celery worker process on Redis; the jobs page shows them live."""

import json

import pytest

from annotation.models import GoldLabel, Project, Role
from tests.conftest import log_in, screenshot, wait_for
from tests.factories import add_member, make_solution
from workers.export_services import export_job_start
from workers.models import Job, JobChunk
from workers.services import chunk_claim, job_cancel

pytestmark = pytest.mark.django_db(transaction=True)


def _labelled_project(n: int = 3) -> Project:
    project = Project.objects.create(name="Export me")
    for i in range(n):
        solution = make_solution(project, f"q{i}", [f"step a {i}", f"step b {i}"])
        for step, value in zip(solution.steps.order_by("index"), (1, -1), strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.IMPORTED, origin="test")
    return project


def test_export_job_runs_on_a_real_worker_and_offers_the_file(celery_worker_process, client, make_user):
    project = _labelled_project(3)
    admin = make_user("boss")
    add_member(project, admin, Role.ADMIN)
    job = export_job_start(project=project, format_name="visualprocessbench", label_source="gold")
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["done", "failed"]).first(), message="export job")
    assert job.status == "done", job.error
    assert job.counts["records_written"] == 3 and job.progress_done == job.progress_total == 3

    client.login(username="boss", password="pw-boss")
    response = client.get(f"/projects/{project.id}/jobs/{job.id}/download/")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["response"]["process_correctness"] for line in lines] == [[1, -1]] * 3


def test_a_chunk_is_claimed_once_and_cancel_stops_the_job():
    project = _labelled_project(1)
    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"})
    chunk = JobChunk.objects.create(job=job, index=0)
    assert chunk_claim(chunk_id=chunk.id) is not None
    assert chunk_claim(chunk_id=chunk.id) is None, "a running chunk must not be claimed twice"
    assert job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == "cancelled"
    other = JobChunk.objects.create(job=job, index=1)
    assert chunk_claim(chunk_id=other.id) is None, "a cancelled job's chunks must not start"


def test_jobs_page_starts_an_export_and_shows_live_progress(celery_worker_process, page, make_user):
    project = _labelled_project(4)
    add_member(project, make_user("boss2"), Role.ADMIN)
    log_in(page, "boss2")
    page.goto(f"/projects/{project.id}/jobs/")
    page.select_option("select[name=format]", "visualprocessbench")
    page.select_option("select[name=label_source]", "gold")
    page.click("text=Start export")
    page.wait_for_selector("tr.job.status-done", timeout=60000)
    assert page.locator("tr.job a.download").count() == 1
    screenshot(page, "jobs-page")


def test_outsiders_and_annotators_cannot_see_jobs(client, make_user):
    project = _labelled_project(1)
    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"})
    urls = [
        ("get", f"/projects/{project.id}/jobs/"),
        ("post", f"/projects/{project.id}/jobs/export/"),
        ("get", f"/projects/{project.id}/jobs/{job.id}/"),
        ("post", f"/projects/{project.id}/jobs/{job.id}/cancel/"),
        ("get", f"/projects/{project.id}/jobs/{job.id}/download/"),
        ("get", f"/projects/{project.id}/jobs/{job.id}/download/images/"),
        ("get", f"/projects/{project.id}/jobs/{job.id}/download/meta/"),
        ("post", f"/projects/{project.id}/jobs/{job.id}/requeue/"),
        ("get", f"/api/projects/{project.id}/jobs/"),
        ("post", f"/api/projects/{project.id}/jobs/"),
        ("post", f"/api/projects/{project.id}/jobs/{job.id}/requeue/"),
    ]
    make_user("stranger")
    client.login(username="stranger", password="pw-stranger")
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 404, url
    member = make_user("member")
    add_member(project, member, Role.ANNOTATOR)
    client.login(username="member", password="pw-member")
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 403, url
    job.refresh_from_db()
    assert job.status == "queued" and not job.chunks.exists() and Job.objects.count() == 1


def test_a_worker_presumed_dead_cannot_finish_or_fail_the_chunk_that_was_taken_over(settings):
    """The claim's attempt fences it: after a take-over, the old claim's finish, heartbeat and failure change nothing."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from workers.services import ChunkLost, chunk_finish, chunk_heartbeat, job_fail

    project = _labelled_project(1)
    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"}, progress_total=1)
    chunk = JobChunk.objects.create(job=job, index=0)
    old = chunk_claim(chunk_id=chunk.id, worker="old@host")
    JobChunk.objects.filter(pk=chunk.id).update(claimed_at=timezone.now() - timedelta(seconds=settings.STEPMARK_CHUNK_LEASE_SECONDS + 1))
    new = chunk_claim(chunk_id=chunk.id, worker="new@host")
    assert (old.attempts, new.attempts, new.claimed_by) == (1, 2, "new@host")

    with pytest.raises(ChunkLost):
        chunk_heartbeat(chunk=old)
    with pytest.raises(ChunkLost), transaction.atomic():
        chunk_finish(chunk=old, counts={"records": 1})
    job_fail(chunk=old, error="the old worker woke up and failed")
    job.refresh_from_db()
    assert job.status == "running" and job.progress_done == 0 and job.counts == {}

    with transaction.atomic():
        chunk_finish(chunk=new, counts={"records": 1})
    job.refresh_from_db()
    assert (job.status, job.progress_done, job.counts) == ("done", 1, {"records": 1})


def test_retry_of_a_failed_job_starts_its_unfinished_chunks_again_and_a_done_job_refuses():
    from stepmark.celery import app
    from workers.services import job_fail, job_requeue

    project = _labelled_project(1)
    job = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"})
    done = JobChunk.objects.create(job=job, index=0, status="done")
    failing = JobChunk.objects.create(job=job, index=1)
    job_fail(chunk=chunk_claim(chunk_id=failing.id), error="server said no")
    job.refresh_from_db()
    assert job.status == "failed"

    try:
        assert job_requeue(job=job) == 1  # only the failed chunk; the done one stays done
    finally:
        app.control.purge()  # no worker here: drop the message sent
    job.refresh_from_db()
    failing.refresh_from_db()
    done.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == ("queued", "", None)
    assert (failing.status, failing.error, done.status) == ("pending", "", "done")
    assert failing.enqueued_at is not None

    Job.objects.filter(pk=job.pk).update(status="done")
    with pytest.raises(ValueError, match="is done: there is nothing to re-queue"):
        job_requeue(job=job)


def test_progress_ends_exact_when_an_attempt_dies_half_way():
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from workers.services import ChunkLost, ProgressReporter, chunk_finish

    project = _labelled_project(1)
    job = Job.objects.create(kind=Job.Kind.MC_LABEL, project=project, progress_total=4)
    chunk = JobChunk.objects.create(job=job, index=0, size=4)
    first = chunk_claim(chunk_id=chunk.pk, worker="a")
    dead = ProgressReporter(chunk=first)
    dead.add(3)
    dead.flush()
    job.refresh_from_db()
    assert job.progress_done == 3
    # Worker a goes silent past its lease; worker b takes the chunk over.
    JobChunk.objects.filter(pk=chunk.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    second = chunk_claim(chunk_id=chunk.pk, worker="b")
    assert second is not None and second.attempts == 2
    dead.add(1)
    with pytest.raises(ChunkLost):
        dead.flush()  # a wakes up late: it adds nothing, to the chunk or the job
    dead.close()
    job.refresh_from_db()
    assert job.progress_done == 3
    with ProgressReporter(chunk=second) as live:
        live.add(4)
        live.flush()
    job.refresh_from_db()
    assert job.progress_done == 7  # while b runs, a's units are still in: at most the chunk's size too many
    with transaction.atomic():
        chunk_finish(chunk=second)
    job.refresh_from_db()
    assert job.status == "done" and job.progress_done == job.progress_total == 4
