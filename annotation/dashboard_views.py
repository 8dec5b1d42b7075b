"""The project dashboard page: the numbers from annotation.dashboard drawn as inline SVG charts."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe

from annotation import charts
from annotation.access import can_administer, project_for_reviewer
from annotation.dashboard import REFERENCES, Dashboard, project_dashboard

REFERENCE_COLORS = {"MC": "#0072b2", "PRM": "#e69f00", "Judge": "#cc79a7", "Gold": "#009e73"}
PROGRESS_COLORS = ("#1f8a4c", "#9fd3b2", "#e3e6eb")


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _charts(data: Dashboard) -> dict[str, str]:
    colors = {name: charts.PALETTE[i % len(charts.PALETTE)] for i, name in enumerate(data.annotators)}
    drawn = {
        "progress": charts.stacked_bars(
            title="Progress: solutions and steps",
            categories=["Solutions", "Steps"],
            segments=[
                charts.Series(f"Done ({data.overlap} annotator{'s' if data.overlap > 1 else ''})",
                              [data.solutions_complete, data.steps_full], PROGRESS_COLORS[0]),
                charts.Series("Started", [data.solutions_started, data.steps_partial], PROGRESS_COLORS[1]),
                charts.Series("Not started", [data.solutions_not_started, data.steps_unlabelled], PROGRESS_COLORS[2]),
            ],
            axis_label="Share of the project",
            named=True,
            width=640,
        ),
        "pace": charts.bar_chart(
            title="Pace: steps labelled per hour, per annotator",
            categories=[p.annotator for p in data.pace],
            series=[charts.Series("Steps per hour", [p.steps_per_hour for p in data.pace], charts.PALETTE[0])],
            axis_label="Steps per hour (submitted items)",
            value_text=lambda v: f"{v:.0f}",
        ),
        "distribution": charts.stacked_bars(
            title="Human label distribution per data source",
            categories=list(data.distribution),
            segments=[
                charts.Series(name, [counts[value] for counts in data.distribution.values()], charts.LABEL_COLORS[value])
                for value, name in ((1, "+1 correct"), (0, "0 neutral"), (-1, "−1 incorrect"))
            ],
            axis_label="Share of human labels",
            width=1000,
        ),
        "machine": charts.bar_chart(
            title="Agreement of human labels with MC, PRM, judge and gold labels",
            categories=["All annotators", *data.annotators],
            series=[
                charts.Series(
                    reference,
                    [r.percent for r in [data.machine[k], *(data.machine_by_annotator[n][k] for n in data.annotators)]],
                    REFERENCE_COLORS[reference],
                )
                for k, reference in enumerate(REFERENCES)
            ],
            axis_label="Percent agreement",
            value_text=_percent,
            tick_text=_percent,
            max_value=1.0,
        ),
    }
    if data.days:
        drawn["per_day"] = charts.line_chart(
            title="Labels per day, per annotator",
            x_labels=[day.strftime("%b %d") for day in data.days],
            series=[charts.Series(name, data.labels_per_day[name], colors[name]) for name in data.annotators],
            y_label="Labels",
            x_label="Day (first labelled)",
            integer=True,
        )
    index = {name: i for i, name in enumerate(data.annotators)}
    values, notes = {}, {}
    for (first, second), pair in data.kappa.items():
        for cell in ((index[first], index[second]), (index[second], index[first])):
            values[cell] = pair.kappa
            notes[cell] = f"({pair.units} shared steps)"
    drawn["kappa"] = charts.heat_map(
        title="Cohen's kappa for every pair of annotators", labels=data.annotators, values=values, notes=notes
    )
    # Every string above was escaped by the charts module.
    return {name: mark_safe(svg) for name, svg in drawn.items()}


@login_required
def dashboard(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for_reviewer(request.user, project_id)
    data = project_dashboard(project=project)
    return render(
        request,
        "annotation/dashboard.html",
        {
            "project": project,
            "d": data,
            "charts": _charts(data),
            "administers": can_administer(request.user, project),
        },
    )
