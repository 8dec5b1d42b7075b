"""Jobs survive faults: a worker killed with SIGKILL mid-chunk, a broker that is down when a job starts.

Everything is real: PostgreSQL, Redis, `celery worker` and `celery beat` processes. The policy
is scripted behind a real OpenAI-compatible HTTP server (tests/test_mc_jobs.py), slowed so that
a chunk is still running when its worker is killed.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command

from annotation.models import AutoLabel, GoldLabel, Role, Step
from tests.conftest import wait_for
from tests.factories import add_member, make_solution
from tests.test_mc_jobs import ScriptedPolicy, backend_params, finished, mc_counts
from workers.export_services import export_job_start
from workers.generation.serve import OpenAICompatibleServer
from workers.mc_services import mc_job_start
from workers.models import Job, JobChunk
from workers.services import QueueUnavailable

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_PORT_BROKER = "redis://127.0.0.1:9/0"  # the discard port: nothing listens there


@pytest.fixture
def short_lease(monkeypatch, settings):
    # Read by the worker and beat processes from their environment, and by this process from settings.
    monkeypatch.setenv("STEPMARK_CHUNK_LEASE_SECONDS", "2")
    monkeypatch.setenv("STEPMARK_REAPER_INTERVAL_SECONDS", "1")
    settings.STEPMARK_CHUNK_LEASE_SECONDS = 2


@pytest.fixture
def slow_policy():
    policy = ScriptedPolicy(delay=0.4)
    server = OpenAICompatibleServer(policy, model="scripted").start()
    server.policy = policy
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _listed_servers(request, settings, monkeypatch):
    """Workers call only listed servers: list the slow policy (as test_mc_jobs' backend_params names it)."""
    if "slow_policy" in request.fixturenames:
        import json

        servers = {"scripted": {"base_url": request.getfixturevalue("slow_policy").base_url, "model": "scripted"}}
        settings.STEPMARK_GENERATION_SERVERS = servers
        monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(servers))


def set_broker(url: str) -> None:
    """Point this process's Celery producer at `url` (its connection pools are rebuilt on next use)."""
    import os

    from stepmark.celery import app

    os.environ["CELERY_BROKER_URL"] = url  # Celery reads this before its own setting
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_down(settings):
    """The web side's broker URL names a closed port; `restore()` brings the real one back."""
    import os

    good, good_env = settings.CELERY_BROKER_URL, os.environ.get("CELERY_BROKER_URL")
    set_broker(CLOSED_PORT_BROKER)

    def restore():
        set_broker(good)

    yield restore
    set_broker(good)
    if good_env is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = good_env


def labelled_solutions(project, n: int) -> None:
    """n solutions whose one step has a gold label, so an export of gold labels writes n records."""
    for i in range(n):
        step = make_solution(project, f"e{i}", ["one step"]).steps.get()
        GoldLabel.objects.create(step=step, value=1, source=GoldLabel.Source.IMPORTED, origin="test")


def test_killed_worker_job_finishes_by_itself_with_every_label_once(
    short_lease, celery_worker_process, celery_beat_process, slow_policy, project
):
    for i in range(6):
        make_solution(project, f"q{i}", ["rate=1.0", "rate=0.0"])
    job = mc_job_start(
        project=project, backend=backend_params(slow_policy), strategy="exhaustive", k=2, solutions_per_chunk=1
    )
    wait_for(
        lambda: job.chunks.filter(status="done").count() >= 2 and job.chunks.filter(status="running").exists(),
        timeout=90,
        message="two chunks done and one running",
    )
    celery_worker_process.kill()  # SIGKILL: no clean-up, its message stays unacknowledged in Redis
    done_before = {c.pk: c.finished_at for c in job.chunks.filter(status="done")}
    interrupted = job.chunks.get(status="running")
    assert Job.objects.get(pk=job.pk).status == "running"

    celery_worker_process.restart()  # nothing else: no re-enqueue by hand
    job = finished(job, timeout=90)
    assert job.status == "done", job.error
    for chunk in JobChunk.objects.filter(pk__in=done_before):
        assert chunk.finished_at == done_before[chunk.pk] and chunk.attempts == 1, "a finished chunk ran again"
    interrupted.refresh_from_db()
    assert interrupted.status == "done" and interrupted.attempts == 2, "the dead worker's chunk was taken over once"
    assert job.counts["solutions"] == 6 and job.progress_done == job.progress_total == 6
    # The database holds exactly one label per step, with the scripted counts.
    assert AutoLabel.objects.filter(kind="mc").count() == Step.objects.count() == 12
    assert mc_counts(project) == {(f"q{i}", j): ((2, 2) if j == 0 else (0, 2)) for i in range(6) for j in range(2)}


def test_reaper_command_resends_a_dead_workers_chunk(short_lease, celery_worker_process, project):
    """A chunk left "running" by a worker that died is re-sent by `manage.py jobs_reap` once its lease expired."""
    make_solution(project, "q0", ["rate=1.0"])
    job = export_job_start(project=project, format_name="visualprocessbench")
    job = finished(job)
    assert job.status == "done"
    # A job whose only chunk a dead worker claimed 5 s ago (longer than the 2 s lease) and never acknowledged.
    from datetime import timedelta

    from django.utils import timezone

    stuck = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"},
                               status=Job.Status.RUNNING, progress_total=1)
    long_ago = timezone.now() - timedelta(seconds=5)
    chunk = JobChunk.objects.create(job=stuck, index=0, status="running", attempts=1, claimed_at=long_ago,
                                    enqueued_at=long_ago, params={"first_id": 1, "last_id": 10**9})
    call_command("jobs_reap")
    stuck = finished(stuck)
    assert stuck.status == "done", stuck.error
    chunk.refresh_from_db()
    assert chunk.attempts == 2 and chunk.status == "done"
    # A chunk whose lease still holds is left alone.
    fresh = Job.objects.create(kind=Job.Kind.EXPORT, project=project, params={"format": "visualprocessbench"},
                               status=Job.Status.RUNNING)
    JobChunk.objects.create(job=fresh, index=0, status="running", attempts=1, claimed_at=timezone.now(),
                            enqueued_at=timezone.now())
    from workers.services import jobs_reap

    assert jobs_reap().chunks == 0


def test_broker_down_page_says_queue_unavailable_and_admin_requeues(
    celery_worker_process, broker_down, client, make_user, project
):
    labelled_solutions(project, 1)
    admin = make_user("boss")
    add_member(project, admin, Role.ADMIN)
    client.login(username="boss", password="pw-boss")

    response = client.post(f"/projects/{project.id}/jobs/export/", {"format": "visualprocessbench", "label_source": "gold"},
                           follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    job = Job.objects.get(project=project)
    assert f"The job queue is unavailable, so job #{job.pk} is saved but not queued yet" in page
    # The join waits for its part: not sent yet, and not counted as unsent.
    assert job.status == "queued" and job.chunks.get(stage=0).enqueued_at is None
    assert "Not queued: 1 chunk never reached the job queue" in page and "Re-queue</button>" in page

    # While the broker is still down, re-queueing says so again (no 500) and changes nothing.
    response = client.post(f"/projects/{project.id}/jobs/{job.pk}/requeue/", follow=True)
    assert response.status_code == 200 and "The job queue is unavailable" in response.content.decode()
    assert job.chunks.get(stage=0).enqueued_at is None

    broker_down()  # the broker is back
    response = client.post(f"/projects/{project.id}/jobs/{job.pk}/requeue/", follow=True)
    assert f"Job #{job.pk}: 1 chunk sent to the queue" in response.content.decode()
    job = finished(job)
    assert job.status == "done" and job.counts["records_written"] == 1


def test_broker_down_api_answers_503_and_the_reaper_sends_the_job_later(
    celery_worker_process, broker_down, client, make_user, project
):
    labelled_solutions(project, 3)
    admin = make_user("boss")
    add_member(project, admin, Role.ADMIN)
    client.login(username="boss", password="pw-boss")

    response = client.post(f"/api/projects/{project.id}/jobs/", {"format": "visualprocessbench", "label_source": "gold"},
                           content_type="application/json")
    assert response.status_code == 503, response.content
    body = response.json()
    job = Job.objects.get(project=project)
    assert body == {"detail": str(QueueUnavailable(job_id=job.pk)), "code": "queue_unavailable", "job": job.pk}
    assert client.get(f"/api/projects/{project.id}/jobs/").json()[0]["unsent_chunks"] == 1
    # Bad input is still a 400 naming the field, not a 503 or a 500.
    response = client.post(f"/api/projects/{project.id}/jobs/", {"format": "nope"}, content_type="application/json")
    assert response.status_code == 400 and "format: Select a valid choice. nope" in response.json()["detail"]

    broker_down()  # back; nobody presses anything: the reaper (here its command, as beat runs it) sends the job
    call_command("jobs_reap")
    job = finished(job)
    assert job.status == "done" and job.counts["records_written"] == 3
    assert client.get(f"/api/projects/{project.id}/jobs/").json()[0]["unsent_chunks"] == 0
    # A finished job has nothing to re-queue: 409 with the reason.
    response = client.post(f"/api/projects/{project.id}/jobs/{job.pk}/requeue/")
    assert response.status_code == 409 and "is done" in response.json()["detail"]


def test_jobs_page_in_a_browser_shows_the_unsent_job_and_requeues_it(
    celery_worker_process, broker_down, page, make_user, project
):
    from tests.conftest import log_in, screenshot

    labelled_solutions(project, 2)
    add_member(project, make_user("boss3"), Role.ADMIN)
    log_in(page, "boss3")
    page.goto(f"/projects/{project.id}/jobs/")
    page.select_option("select[name=format]", "visualprocessbench")
    page.select_option("select[name=label_source]", "gold")
    page.click("text=Start export")
    page.wait_for_selector("text=The job queue is unavailable")
    assert page.locator("tr.job.status-queued .job-unsent").count() == 1
    screenshot(page, "jobs-queue-unavailable")

    broker_down()  # back
    page.click("tr.job button.job-requeue")
    page.wait_for_selector("tr.job.status-done", timeout=60000)
    assert page.locator("tr.job .job-unsent").count() == 0
    screenshot(page, "jobs-requeued")
