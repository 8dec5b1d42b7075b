"""Shared fixtures. Tests run on the database DATABASE_URL names (PostgreSQL in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

SHARED_DATA = Path(settings.STEPMARK_DEMO_DATA_DIR)


def shared_data(relative: str) -> Path:
    """A path in ../shared/data; skip the test with a clear reason when the data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data {path} is not present on this machine")
    return path


@pytest.fixture(autouse=True)
def _media_root(tmp_path, settings):
    # Every test stores images in its own folder, so file assertions see only their own files.
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _progress_on_the_test_connection(settings):
    # A runner called in the test's process reports progress on the test's own connection (Django's
    # test cases refuse others); worker processes the tests start use their side connection.
    settings.STEPMARK_PROGRESS_SIDE_CONNECTION = False


@pytest.fixture
def project(db):
    from annotation.models import Project

    return Project.objects.create(name="test project")


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def _make(username: str, *, staff: bool = False, superuser: bool = False):
        return get_user_model().objects.create_user(
            username=username, password="pw-" + username, is_staff=staff or superuser, is_superuser=superuser
        )

    return _make


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    import os

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls in tests are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    # Playwright's polling (wait_for_function) evaluates strings, which the site's content policy
    # forbids; tests/test_csp_pages.py checks the pages under the policy itself (strict_page).
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def strict_page(browser, live_server):
    """A page that enforces the content security policy, as a visitor's browser does."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """Keep a screenshot as a test artifact (test-artifacts/NAME.png) for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def _celery_env(settings) -> dict:
    """The environment of a Celery process using this test's database, media folder and broker."""
    import os

    from django.db import connection

    from stepmark.env import database_url

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(db),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
    )
    return env


class CeleryProcess:
    """A real `celery -A stepmark ...` process; a worker is ready once it answers a ping by its node name."""

    _count = 0

    def __init__(self, env: dict, *, beat: bool = False, beat_schedule_file: Path | None = None,
                 queues: str = "default,gpu"):
        import os

        CeleryProcess._count += 1
        self.env = env
        self.beat = beat
        self.queues = queues
        self.node = f"w{CeleryProcess._count}-{os.getpid()}@stepmark-test"
        self.schedule_file = beat_schedule_file
        self.log_path = ARTIFACTS / ("celery-beat.log" if beat else "celery-worker.log")
        ARTIFACTS.mkdir(exist_ok=True)
        self.process = self._start()
        self._wait_ready()

    def _start(self):
        import subprocess
        import sys

        if self.beat:
            args = ["beat", "--loglevel", "INFO", "--schedule", str(self.schedule_file)]
        else:
            args = ["worker", "-Q", self.queues, "--pool", "solo", "--concurrency", "1", "-n", self.node,
                    "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        log = self.log_path.open("a")
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "stepmark", *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(Path(__file__).resolve().parent.parent),
        )

    def _wait_ready(self):
        import time

        from stepmark.celery import app

        if self.beat:
            time.sleep(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"celery beat exited early: see {self.log_path}")
            return
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if app.control.ping(destination=[self.node], timeout=0.5):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early: see {self.log_path}")
        raise RuntimeError(f"celery worker did not answer within 90 s: see {self.log_path}")

    def kill(self):
        import signal

        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self):
        self.process = self._start()
        self._wait_ready()

    def stop(self):
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real Celery worker process on the real broker, using this test's database and media folder."""
    from stepmark.celery import app

    app.control.purge()  # messages left by an earlier, interrupted run must not leak in
    worker = CeleryProcess(_celery_env(settings))
    yield worker
    worker.stop()


@pytest.fixture
def celery_workers(transactional_db, settings):
    """`start(n)` starts n more worker processes on the same broker and database; all stop at the end."""
    started: list[CeleryProcess] = []

    def start(n: int) -> list[CeleryProcess]:
        new = [CeleryProcess(_celery_env(settings)) for _ in range(n)]
        started.extend(new)
        return new

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_beat_process(transactional_db, settings, tmp_path):
    """A real `celery beat` with the database scheduler: it runs the reaper every STEPMARK_REAPER_INTERVAL_SECONDS."""
    beat = CeleryProcess(_celery_env(settings), beat=True, beat_schedule_file=tmp_path / "beat-schedule")
    yield beat
    beat.stop()


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def take_next_item(page, project_id: int) -> None:
    """Open the project's next item as a person does: the next-item page, then its button if shown.

    GET /projects/<id>/next/ only shows an open item; taking a new one is a POST (the button).
    """
    page.goto(f"/projects/{project_id}/next/")
    button = page.locator("#take-next")
    if button.count():
        button.click()
        page.wait_for_load_state()
