"""A project admin who is not staff runs data in and out from Stepmark's own pages, in headless Chromium,
with a real Celery worker process: imports MATH-V testmini (a folder zip) and a VisualProcessBench
file with its images (progress bar seen), sees a bad file refused with file, line and field and nothing
imported, exports with the images zip and downloads both, starts an MC job and cancels it.

Screenshots are kept in test-artifacts/ (admin-*.png).
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

from annotation.models import AutoLabel, Image, ImportRecord, Item, Project, Role, Solution
from tests.conftest import log_in, screenshot, shared_data, wait_for
from tests.factories import add_member, make_solution
from tests.mathv_sample import zip_folder
from tests.test_import_page import vpb_files, vpb_record
from tests.test_mc_jobs import ScriptedPolicy
from workers.generation.serve import OpenAICompatibleServer
from workers.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def slow_policy(settings, monkeypatch):
    policy = ScriptedPolicy(delay=1.0)
    server = OpenAICompatibleServer(policy, model="scripted").start()
    servers = {"scripted": {"base_url": server.base_url, "model": "scripted"}}
    settings.STEPMARK_GENERATION_SERVERS = servers
    monkeypatch.setenv("STEPMARK_GENERATION_SERVERS", json.dumps(servers))
    yield policy
    server.stop()


def _job_row(page, job_id: int):
    return page.locator(f"#job-{job_id}")


def _upload(page, project, *, format_name: str, file, images=None, options: dict | None = None) -> Job:
    page.goto(f"/projects/{project.id}/import/")
    page.select_option("#id_format", format_name)
    page.set_input_files("#id_file", str(file))
    if images is not None:
        page.set_input_files("#id_images", str(images))
    for name, value in (options or {}).items():
        page.fill(f"#id_option_{name}", value)
    before = Job.objects.filter(kind=Job.Kind.IMPORT).count()
    page.click("#start-import")
    page.wait_for_load_state()
    assert Job.objects.filter(kind=Job.Kind.IMPORT).count() == before + 1, page.content()[:3000]
    return Job.objects.filter(kind=Job.Kind.IMPORT).latest("id")


class ItemsHeld:
    """Holds inserts into the items table from another connection (reads go on), so an import that
    has counted its records waits, running, until `release()`: a fast import cannot finish between
    two refreshes of the page's row unseen."""

    def __init__(self):
        from django.db import connections

        self.connection = connections.create_connection("default")
        self.connection.set_autocommit(False)
        with self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {Item._meta.db_table} IN EXCLUSIVE MODE")

    def release(self) -> None:
        if self.connection is not None:
            self.connection.rollback()
            self.connection.close()
            self.connection = None


def _until_finished(page, job: Job, *, timeout: float = 240, held: ItemsHeld | None = None) -> tuple[Job, bool]:
    """Wait for the job's row to show it finished; whether a live progress bar with counts was seen
    running (then `held` is released)."""
    seen_running = False
    deadline = time.monotonic() + timeout
    row = _job_row(page, job.pk)
    while time.monotonic() < deadline:
        classes = row.get_attribute("class") or ""
        if "status-running" in classes and row.locator("progress").is_visible():
            text = row.locator(".job-progress-text").inner_text()
            if " / " in text and "solutions" in text and not seen_running:
                seen_running = True
                screenshot(page, "admin-import-running")
                if held is not None:
                    held.release()
        if any(f"status-{s}" in classes for s in ("done", "failed", "cancelled")):
            job.refresh_from_db()
            return job, seen_running
        time.sleep(0.3)
    raise AssertionError(f"job {job.pk} did not finish within {timeout}s")


def test_admin_imports_exports_and_cancels_from_the_pages(slow_policy, celery_worker_process, page, make_user, tmp_path):
    mathv = shared_data("math-v-testmini")
    project = Project.objects.create(name="Lead's project")
    lead = make_user("lead")  # not staff
    add_member(project, lead, Role.ADMIN)
    log_in(page, "lead")
    page.goto("/")
    page.click(f"[data-project='{project.id}'] >> text=Import data")
    page.wait_for_url(f"**/projects/{project.id}/import/")
    screenshot(page, "admin-import-page")

    # 1. MATH-V testmini: the whole folder, zipped as a person would.
    archive = zip_folder(mathv, tmp_path / "math-v-testmini.zip")
    held = ItemsHeld()
    try:
        job = _upload(page, project, format_name="mathv", file=archive)
        job, seen_running = _until_finished(page, job, held=held)
    finally:
        held.release()
    assert job.status == "done", job.error
    questions = sum(1 for line in (mathv / "testmini.jsonl").read_text().splitlines() if line.strip())
    assert Item.objects.filter(project=project).count() == questions
    assert job.progress_done == job.progress_total == Solution.objects.filter(item__project=project).count()
    assert seen_running, "the live progress bar with counts was seen while the import ran"
    row = _job_row(page, job.pk).inner_text()
    assert f"solutions created: {job.progress_total}" in row
    page.reload()
    history = page.locator("#import-history tr.import-record").first.inner_text()
    assert "mathv" in history and f"{questions} new" in history
    screenshot(page, "admin-import-mathv-done")

    # 2. A VisualProcessBench file with its images zip.
    jsonl, images = vpb_files([vpb_record(i) for i in range(5)], images=("images/a.png",))
    (tmp_path / "test.jsonl").write_bytes(jsonl)
    (tmp_path / "images.zip").write_bytes(images)
    job = _upload(page, project, format_name="visualprocessbench", file=tmp_path / "test.jsonl",
                  images=tmp_path / "images.zip", options={"origin": "VPB (test)"})
    job, _ = _until_finished(page, job)
    assert job.status == "done", job.error
    assert job.counts["solutions_created"] == 5 and job.counts["gold_labels_created"] == 10

    # 3. A bad file: refused with file, line and field; nothing of it is stored.
    counts = (Item.objects.count(), Solution.objects.count(), Image.objects.count(), ImportRecord.objects.count())
    bad = [vpb_record(10), vpb_record(11), {**vpb_record(12), "question": 42}]
    jsonl, images = vpb_files(bad)
    (tmp_path / "bad bench.jsonl").write_bytes(jsonl)
    job = _upload(page, project, format_name="visualprocessbench", file=tmp_path / "bad bench.jsonl",
                  images=tmp_path / "images.zip")
    job, _ = _until_finished(page, job)
    assert job.status == "failed"
    error = _job_row(page, job.pk).locator(".job-error").inner_text()
    assert error.startswith("bad bench.jsonl, line 3, field 'question'"), error
    assert (Item.objects.count(), Solution.objects.count(), Image.objects.count(), ImportRecord.objects.count()) == counts
    screenshot(page, "admin-import-refused")

    # 4. Export with the images zip beside the JSON lines, and download both.
    page.goto(f"/projects/{project.id}/jobs/")
    page.select_option("#id_format", "visualprocessbench")
    page.select_option("#id_label_source", "gold")
    page.check("#id_images_zip")
    page.click("text=Start export")
    page.wait_for_load_state()
    export = Job.objects.filter(kind=Job.Kind.EXPORT).latest("id")
    page.wait_for_selector(f"#job-{export.pk}.status-done", timeout=120000)
    export.refresh_from_db()
    assert export.counts["records_written"] == 5 and export.progress_done == export.progress_total
    row = _job_row(page, export.pk).inner_text()
    assert "records written: 5" in row and f"{export.progress_total} / {export.progress_total} solutions" in row
    with page.expect_download() as download:
        _job_row(page, export.pk).locator("a.download").click()
    lines = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert len(lines) == 5 and {json.loads(line)["response"]["process_correctness"][0] for line in lines} == {1}
    with page.expect_download() as download:
        _job_row(page, export.pk).locator("a.download-images").click()
    with zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read())) as zipped:
        assert zipped.namelist() == ["images/a.png"]
    screenshot(page, "admin-export-done")

    # 5. Start an MC job on a slow policy and cancel it: it stops at its next round.
    mc_project = Project.objects.create(name="MC project")
    add_member(mc_project, lead, Role.ADMIN)
    for i in range(4):
        make_solution(mc_project, f"m{i}", ["rate=1.0", "rate=0.5", "rate=0.0"])
    page.goto(f"/projects/{mc_project.id}/jobs/")
    page.select_option("#id_mc-backend", "openai")
    page.select_option("#id_mc-server", "scripted")
    page.fill("#id_mc-k", "2")
    page.click("text=Start MC labelling")
    page.wait_for_load_state()
    mc_job = Job.objects.filter(kind=Job.Kind.MC_LABEL).latest("id")
    wait_for(lambda: len(slow_policy.requests) > 0, timeout=90, message="the first rollouts")
    page.wait_for_selector(f"#job-{mc_job.pk}.status-running", timeout=30000)
    _job_row(page, mc_job.pk).locator("a.job-cancel").click()
    page.wait_for_selector("#confirm-cancel")
    screenshot(page, "admin-cancel-confirm")
    page.click("#confirm-cancel")
    page.wait_for_selector(f"#job-{mc_job.pk}.status-cancelled", timeout=30000)
    asked = len(slow_policy.requests)
    time.sleep(4)  # a few rounds' time: a chunk still running would keep asking
    assert len(slow_policy.requests) <= asked + 3, "the running chunk stopped at its next round"
    assert not AutoLabel.objects.filter(step__solution__project=mc_project).exists()
    screenshot(page, "admin-job-cancelled")
