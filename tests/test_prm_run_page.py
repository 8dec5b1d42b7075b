"""The training run page: admins see live loss and learning-rate curves; others are kept out."""

from __future__ import annotations

import math
import re

import pytest

from annotation.models import Role
from prm.models import TrainingRun
from tests.factories import add_member
from workers.models import Job

pytestmark = pytest.mark.django_db


def _history(n: int) -> list[dict]:
    return [
        {"step": s, "loss": 0.7 * math.exp(-s / 10), "lr": 1e-3 * math.cos(s / 40), "tokens_per_s": 900.0 + s,
         "time": 1_700_000_000 + s}
        for s in range(1, n + 1)
    ]


def _path_points(html: str, curve_class: str) -> int:
    svg = re.search(rf'<svg[^>]*class="curve {curve_class}".*?</svg>', html, re.S)
    assert svg, f"no {curve_class} chart"
    path = re.search(r'<path class="line" d="([^"]+)"', svg.group(0))
    assert path, f"the {curve_class} chart draws no line"
    return len(re.findall(r"[ML]-?\d", path.group(1)))


@pytest.fixture
def running_run(project):
    return TrainingRun.objects.create(
        project=project, status=TrainingRun.Status.RUNNING, step=17, total_steps=40, history=_history(17),
        config={"backbone": "/models/tiny", "learning_rate": 1e-3}, merge_policy={"mc_label": "value"},
    )


def test_admin_sees_loss_and_lr_curves_with_one_point_per_step(client, make_user, project, running_run):
    add_member(project, make_user("boss"), Role.ADMIN)
    client.login(username="boss", password="pw-boss")
    response = client.get(f"/projects/{project.id}/prm/runs/{running_run.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert _path_points(html, "loss-curve") == 17
    assert _path_points(html, "lr-curve") == 17
    assert f'hx-get="/projects/{project.id}/prm/runs/{running_run.id}/progress/"' in html  # polled while running
    assert "step <span class=\"run-step\">17</span> / 40" in html

    # The polled fragment grows with the history and stops polling once the run is done.
    running_run.history = _history(40)
    running_run.step, running_run.status = 40, TrainingRun.Status.DONE
    running_run.save()
    fragment = client.get(f"/projects/{project.id}/prm/runs/{running_run.id}/progress/").content.decode()
    assert _path_points(fragment, "loss-curve") == 40
    assert "hx-get" not in fragment and "<h1>" not in fragment


def test_a_run_without_history_draws_empty_charts(client, make_user, project):
    add_member(project, make_user("boss"), Role.ADMIN)
    client.login(username="boss", password="pw-boss")
    run = TrainingRun.objects.create(project=project)
    html = client.get(f"/projects/{project.id}/prm/runs/{run.id}/").content.decode()
    assert 'class="curve loss-curve"' in html and '<path class="line"' not in html


def test_admin_starts_a_run_from_the_runs_page(client, make_user, project):
    add_member(project, make_user("boss"), Role.ADMIN)
    client.login(username="boss", password="pw-boss")
    assert client.get(f"/projects/{project.id}/prm/runs/").status_code == 200
    response = client.post(f"/projects/{project.id}/prm/runs/start/", {
        "backbone": "/models/tiny", "learning_rate": "0.001", "epochs": "3", "batch_size": "4",
        "mc_label": "advantage", "consensus_filter": "1",
    })
    run = TrainingRun.objects.get(project=project)
    assert response.status_code == 302 and response.url == f"/projects/{project.id}/prm/runs/{run.id}/"
    assert run.config["learning_rate"] == 0.001 and run.config["epochs"] == 3 and run.config["lora"] is False
    assert run.merge_policy["mc_label"] == "advantage" and run.merge_policy["consensus_filter"] is True
    assert run.job.kind == Job.Kind.TRAIN and run.job.params == {"training_run_id": run.id}

    bad = client.post(f"/projects/{project.id}/prm/runs/start/", {"backbone": "", "learning_rate": "0.001"})
    assert bad.status_code == 400 and TrainingRun.objects.count() == 1
    html = bad.content.decode()
    form = html[html.index(f'action="/projects/{project.id}/prm/runs/start/"'):]
    form = form[:form.index("</form>")]
    assert 'role="alert">Cannot start training:' in form, "the error sits inside the form that caused it"
    typo = client.post(f"/projects/{project.id}/prm/runs/start/", {"backbone": "/no/such/folder", "learning_rate": "fast"})
    assert typo.status_code == 400 and 'value="/no/such/folder"' in typo.content.decode()  # what was typed is kept
    assert TrainingRun.objects.count() == 1


def test_outsiders_get_404_and_annotators_403(client, make_user, project, running_run):
    urls = [
        ("get", f"/projects/{project.id}/prm/runs/"),
        ("post", f"/projects/{project.id}/prm/runs/start/"),
        ("get", f"/projects/{project.id}/prm/runs/{running_run.id}/"),
        ("get", f"/projects/{project.id}/prm/runs/{running_run.id}/progress/"),
    ]
    make_user("stranger")
    client.login(username="stranger", password="pw-stranger")
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 404, url
    add_member(project, make_user("worker"), Role.ANNOTATOR)
    client.login(username="worker", password="pw-worker")
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 403, url
    assert TrainingRun.objects.count() == 1
    client.logout()
    assert client.get(urls[2][1]).status_code == 302  # to the login page


@pytest.mark.django_db(transaction=True)
def test_run_page_in_the_browser(page, make_user):
    from annotation.models import Project
    from tests.conftest import log_in, screenshot

    project = Project.objects.create(name="PRM curves")
    run = TrainingRun.objects.create(
        project=project, status=TrainingRun.Status.RUNNING, step=30, total_steps=60, history=_history(30),
        config={"backbone": "/models/tiny", "learning_rate": 1e-3}, merge_policy={"mc_label": "value"},
    )
    add_member(project, make_user("curves"), Role.ADMIN)
    log_in(page, "curves")
    page.goto(f"/projects/{project.id}/prm/runs/{run.id}/")
    assert page.locator("svg.loss-curve path.line").count() == 1
    screenshot(page, "prm-run-page")
    page.goto(f"/projects/{project.id}/prm/versions/")
    assert page.locator("h1").count() == 1
    screenshot(page, "prm-versions-page")
