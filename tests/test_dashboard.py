"""The project dashboard: its numbers, its queries, who may see it, and the page in a browser."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import charts
from annotation.agreement import (
    binary_label,
    cohen_kappa,
    krippendorff_alpha_nominal,
    pairwise_agreement,
    percent_agreement,
)
from annotation.dashboard import project_dashboard
from annotation.models import Assignment, AutoLabel, GoldLabel, HumanLabel, Item, Project, Role
from tests.conftest import log_in, screenshot
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)

# (item, key, data source, steps) -> {annotator: (labels, assignment status, gold check, seconds)}
SEED = [
    ("q1", "m1", "geometry", 4, {"ann": ([1, 1, -1, -1], "submitted", False, 600),
                                 "bob": ([1, 1, -1, 1], "submitted", False, 300)}),
    ("q1", "m2", "geometry", 3, {"ann": ([1, 0, -1], "submitted", False, 600),
                                 "cy": ([1, 1, -1], "submitted", False, 900)}),
    ("q2", "m1", "charts", 4, {"bob": ([1, -1, -1, 0], "submitted", False, 300),
                               "cy": ([1, -1, 1, 0], "assigned", False, 900)}),
    ("q3", "m1", "charts", 3, {"ann": ([1, 1, 1], "submitted", False, 600),
                               "bob": ([1, 1, 1], "submitted", False, 300),
                               "cy": ([1, 1, -1], "submitted", True, 900)}),
    ("q3", "m2", "charts", 2, {}),
]
# (solution index in SEED) -> per-step scores
MC_SCORES = {0: [0.75, 0.5, 0.0, 0.0625], 2: [0.5, 0.0, 0.0, 0.25], 4: [0.0, 0.0]}
PRM_SCORES = {0: [0.9, 0.4, 0.2, 0.7], 3: [0.8, 0.6, 0.3]}
GOLD = {3: [1, 1, 1]}


def _seed(project: Project, make_user) -> dict:
    users = {name: make_user(name) for name in ("ann", "bob", "cy")}
    for user in users.values():
        add_member(project, user, Role.ANNOTATOR)
    steps_by_solution = []
    for external_id, key, data_source, count, by_annotator in SEED:
        solution = make_solution(project, external_id, [f"Step {i + 1} of {external_id}/{key}." for i in range(count)], key=key)
        Item.objects.filter(pk=solution.item_id).update(data_source=data_source)
        steps = list(solution.steps.order_by("index"))
        steps_by_solution.append(steps)
        for name, (values, status, gold_check, seconds) in by_annotator.items():
            Assignment.objects.create(solution=solution, annotator=users[name], status=status,
                                      is_gold_check=gold_check, seconds_spent=seconds)
            HumanLabel.objects.bulk_create(
                [HumanLabel(step=step, annotator=users[name], value=v) for step, v in zip(steps, values, strict=True)]
            )
    for kind, table in (("mc", MC_SCORES), ("prm", PRM_SCORES)):
        for index, scores in table.items():
            AutoLabel.objects.bulk_create([
                AutoLabel(step=step, kind=kind, source="v1", score=score)
                for step, score in zip(steps_by_solution[index], scores, strict=True)
            ])
    for index, values in GOLD.items():
        for step, value in zip(steps_by_solution[index], values, strict=True):
            GoldLabel.objects.create(step=step, value=value, source=GoldLabel.Source.ADJUDICATED)
    # ann labelled the first solution two days ago: the per-day series spans three days.
    HumanLabel.objects.filter(annotator=users["ann"], step__in=steps_by_solution[0]).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    return users


def _expected() -> dict:
    """The statistics computed straight from SEED with annotation.agreement (no database)."""
    units, distribution = {}, Counter()
    for s, (_, _, source, count, by_annotator) in enumerate(SEED):
        for i in range(count):
            units[s, i] = {name: labels[i] for name, (labels, *_rest) in by_annotator.items()}
            for labels, *_rest in by_annotator.values():
                distribution[source, labels[i]] += 1
    multi = {u: v for u, v in units.items() if len(v) >= 2}

    def with_reference(reference: dict, keep_neutral: bool) -> list[tuple[int, int]]:
        return [(value, reference[u]) for u, by_annotator in units.items() if u in reference
                for value in by_annotator.values() if keep_neutral or value != 0]

    mc = {(s, i): binary_label(x, threshold=0.0) for s, scores in MC_SCORES.items() for i, x in enumerate(scores)}
    prm = {(s, i): binary_label(x, threshold=0.5) for s, scores in PRM_SCORES.items() for i, x in enumerate(scores)}
    gold = {(s, i): v for s, values in GOLD.items() for i, v in enumerate(values)}
    return {
        "units": units,
        "alpha": krippendorff_alpha_nominal(multi),
        "pairs": pairwise_agreement(multi),
        "mc": with_reference(mc, False),
        "prm": with_reference(prm, False),
        "gold": with_reference(gold, True),
        "distribution": distribution,
    }


def test_dashboard_numbers_match_agreement_module(project, make_user):
    project.overlap = 2
    project.save()
    _seed(project, make_user)
    expected = _expected()
    data = project_dashboard(project=project)

    assert (data.solutions_total, data.solutions_complete, data.solutions_started) == (5, 3, 1)
    assert (data.steps_total, data.steps_labelled, data.steps_multi, data.steps_full) == (16, 14, 14, 14)
    assert data.annotators == ["ann", "bob", "cy"]
    # ann: 4 + 3 + 3 labels in 1800 s; bob: 4 + 4 + 3 in 900 s; cy: the in-progress item is left out.
    assert {p.annotator: (p.labels, p.seconds) for p in data.pace} == {"ann": (10, 1800), "bob": (11, 900), "cy": (6, 1800)}
    assert [p.steps_per_hour for p in data.pace] == [pytest.approx(20.0), pytest.approx(44.0), pytest.approx(12.0)]
    assert len(data.days) == 3 and data.labels_per_day["ann"] == [4, 0, 6] and sum(data.labels_per_day["cy"]) == 10

    assert data.alpha == pytest.approx(expected["alpha"])
    assert 0 < data.alpha < 1
    assert set(data.kappa) == set(expected["pairs"])
    for pair, agreement in expected["pairs"].items():
        assert data.kappa[pair].units == agreement.units
        assert data.kappa[pair].kappa == pytest.approx(agreement.kappa)
    assert data.kappa["ann", "bob"].units == 7  # q1/m1 (4 steps) and q3/m1 (3 steps)

    machine = {r.reference: r for r in data.machine}
    for reference in ("mc", "prm", "gold"):
        row = machine[reference.upper() if reference != "gold" else "Gold"]
        assert row.pairs == len(expected[reference]) > 0
        assert row.percent == pytest.approx(percent_agreement(expected[reference]))
        assert row.kappa == pytest.approx(cohen_kappa(expected[reference]))
    # MC compares 8 human labels on q1/m1 and 6 non-neutral ones on q2/m1; gold 9 labels on q3/m1.
    assert (machine["MC"].pairs, machine["Gold"].pairs) == (14, 9)

    assert {source: dict(counts) for source, counts in data.distribution.items()} == {
        source: {v: expected["distribution"][source, v] for v in (1, 0, -1) if expected["distribution"][source, v]}
        for source in ("charts", "geometry")
    }
    assert data.distribution["geometry"] == Counter({1: 8, -1: 5, 0: 1})


def test_dashboard_query_count_does_not_grow_with_data(project, make_user, client):
    reviewer = make_user("rev")
    add_member(project, reviewer, Role.REVIEWER)
    small = Project.objects.create(name="small")
    add_member(small, reviewer, Role.REVIEWER)
    _seed(project, make_user)
    client.login(username="rev", password="pw-rev")
    counts = []
    for one in (small, project):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/projects/{one.id}/dashboard/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 12, counts
    with CaptureQueriesContext(connection) as queries:
        project_dashboard(project=project)
    assert len(queries) == 7  # + error categories; + the judge verdicts (one more, once there are any)


def test_dashboard_access(project, make_user, client):
    add_member(project, make_user("adm"), Role.ADMIN)
    add_member(project, make_user("rev"), Role.REVIEWER)
    add_member(project, make_user("plain"), Role.ANNOTATOR)
    make_user("boss", staff=True)
    make_user("outsider")
    url = f"/projects/{project.id}/dashboard/"
    assert client.get(url).status_code == 302  # anonymous: to the login page
    for username, status in (("boss", 200), ("adm", 200), ("rev", 200), ("plain", 403), ("outsider", 404)):
        client.login(username=username, password="pw-" + username)
        assert client.get(url).status_code == status, username
    assert client.get(f"/projects/{project.id + 999}/dashboard/").status_code == 404


def test_empty_project_dashboard_renders(project, make_user, client):
    add_member(project, make_user("rev"), Role.REVIEWER)
    client.login(username="rev", password="pw-rev")
    page = client.get(f"/projects/{project.id}/dashboard/").content.decode()
    assert "No human labels yet." in page and 'id="alpha">n/a<' in page


def test_charts_are_titled_escaped_svg():
    svg = charts.bar_chart(title="Pace <per> hour", categories=["a&b", "c"],
                           series=[charts.Series("rate", [3.0, None], "#000")], axis_label="Steps per hour")
    assert svg.startswith("<svg") and "<title>Pace &lt;per&gt; hour</title>" in svg
    assert "a&amp;b" in svg and "Steps per hour" in svg and "n/a" in svg
    heat = charts.heat_map(title="kappa", labels=["x", "y"], values={(0, 1): -0.5, (1, 0): -0.5})
    assert heat.count('class="cell-value"') == 2 and ">-0.50<" in heat
    assert charts._nice_ticks(7) == [0, 2, 4, 6, 8] and charts._nice_ticks(0.9) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts._nice_ticks(11) == [0, 2.5, 5, 7.5, 10, 12.5] and charts._nice_ticks(11, integer=True) == [0, 5, 10, 15]
    assert charts._nice_ticks(2, integer=True) == [0, 1, 2]


def test_reviewer_sees_dashboard_in_browser(page, make_user):
    project = Project.objects.create(name="Geometry and charts", overlap=2)
    _seed(project, make_user)
    add_member(project, make_user("rev"), Role.REVIEWER)
    expected = _expected()

    log_in(page, "rev")
    page.click(f"section.project[data-project='{project.id}'] >> text=Dashboard")
    page.wait_for_selector("#agreement")
    assert page.inner_text("#kpi-solutions") == "3 / 5"
    assert page.inner_text("#kpi-steps") == "14 / 16"
    assert float(page.inner_text("#alpha")) == pytest.approx(expected["alpha"], abs=5e-4)
    for (first, second), agreement in expected["pairs"].items():
        shown = page.inner_text(f"tr[data-pair='{first}|{second}'] td.kappa")
        assert float(shown) == pytest.approx(agreement.kappa, abs=5e-4), (first, second)
        shown = page.inner_text(f"tr[data-pair='{first}|{second}'] td.percent")
        assert float(shown) == pytest.approx(agreement.percent, abs=5e-4), (first, second)
    for reference, key in (("MC", "mc"), ("PRM", "prm"), ("Gold", "gold")):
        row = f"tr[data-reference='{reference}']"
        assert int(page.inner_text(f"{row} td.pairs")) == len(expected[key])
        assert float(page.inner_text(f"{row} td.percent")) == pytest.approx(percent_agreement(expected[key]), abs=5e-4)
        assert float(page.inner_text(f"{row} td.kappa")) == pytest.approx(cohen_kappa(expected[key]), abs=5e-4)
    assert page.inner_text("tr[data-annotator='bob'] td.rate") == "44.0"
    # Six charts, each with a title, drawn on the server.
    titles = page.locator("svg.chart > title").evaluate_all("nodes => nodes.map(n => n.textContent)")
    assert len(titles) == 6 and "Cohen's kappa for every pair of annotators" in titles
    assert page.locator("svg.heat-map text.cell-value").count() == 6
    assert page.locator("svg.stacked-bars").nth(1).locator("text", has_text="geometry").count() == 1
    screenshot(page, "dashboard")
