"""The dashboard's progress bar: every share it prints says what it is a share of."""

from __future__ import annotations

import re

import pytest

from annotation import charts
from annotation.models import Role
from tests.factories import add_member, make_solution

PROGRESS = [
    charts.Series("Done (1 annotator)", [12, 70], "#1f8a4c"),
    charts.Series("Started", [3, 20], "#9fd3b2"),
    charts.Series("Not started", [1505, 5018], "#e3e6eb"),
]


def _texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]+)</text>", svg)


def test_progress_labels_name_their_part_and_never_round_to_done():
    svg = charts.stacked_bars(title="Progress", categories=["Solutions", "Steps"], segments=PROGRESS,
                              axis_label="Share", named=True, width=640)
    texts = _texts(svg)
    # 1505 of 1520 not started: the big grey part says so, and the done share is told apart.
    assert ">99% not started" in [t.replace("&gt;", ">") for t in texts]
    assert "98% not started" in texts
    assert "99%" not in texts and "98%" not in texts  # no bare share that reads as progress
    assert "n=1520 · &lt;1% done (1 annotator)" in texts
    assert charts.share_text(1519 / 1520) == ">99%" and charts.share_text(1) == "100%"
    assert charts.share_text(1 / 1520) == "<1%" and charts.share_text(0) == "0%"


@pytest.mark.django_db
def test_dashboard_progress_bar_names_the_not_started_part(project, make_user, client):
    make_solution(project, "p1", ["a", "b", "c"])
    add_member(project, make_user("rev"), Role.REVIEWER)
    client.login(username="rev", password="pw-rev")
    page = client.get(f"/projects/{project.id}/dashboard/").content.decode()
    progress = page[page.index('id="progress"'):]
    assert "100% not started</text>" in progress[: progress.index("</svg>")]
