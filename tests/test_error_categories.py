"""Error categories on incorrect steps: validated by the save, kept with the label and its history,
exported as an extension field, counted on the dashboard, and chosen by key in the browser."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.dashboard import project_dashboard
from annotation.models import (
    DEFAULT_ERROR_CATEGORIES,
    Assignment,
    HumanLabel,
    LabelChange,
    Project,
    Role,
)
from annotation.selectors import ExportFilters
from annotation.services.dataset_export import dataset_export
from annotation.services.label_save import assignment_step_label_set
from annotation.services.labels import LabelRejected
from annotation.services.queue import next_assignment
from tests.conftest import log_in, screenshot, take_next_item
from tests.factories import add_member, make_solution


@pytest.fixture
def categorised(make_user):
    project = Project.objects.create(name="Categories", overlap=2, error_categories_enabled=True)
    solution = make_solution(project, "cat1", ["Read the chart: 5 bars.", "So 5 + 3 = 9.", "Answer: 9."])
    annotators = [make_user("ann1"), make_user("ann2")]
    for user in annotators:
        add_member(project, user, Role.ANNOTATOR)
    return project, solution, annotators


def _save(user, assignment, step, value, category=None, note=None):
    return assignment_step_label_set(
        user=user, project_id=assignment.solution.project_id, assignment_id=assignment.pk, step_id=step.pk,
        value=value, error_category=category, error_note=note,
    )


def _steps(solution):
    return list(solution.steps.order_by("index"))


@pytest.mark.django_db
def test_the_default_list_is_math_v_error_analysis_and_is_checked():
    assert DEFAULT_ERROR_CATEGORIES == (
        "visual perception", "reasoning", "knowledge", "calculation", "misunderstood question", "other",
    )
    assert Project.objects.create(name="defaults").error_categories == list(DEFAULT_ERROR_CATEGORIES)
    for bad in ("reasoning", ["a", "a"], ["", "b"], [1], [str(i) for i in range(10)]):
        project = Project(name="bad", error_categories=bad)
        with pytest.raises(ValidationError) as raised:
            project.full_clean()
        assert "error_categories" in raised.value.message_dict


@pytest.mark.django_db
def test_a_category_is_stored_with_the_label_and_its_history(categorised):
    project, solution, (ann1, _) = categorised
    assignment = next_assignment(project=project, annotator=ann1)
    first, second, _ = _steps(solution)
    saved = _save(ann1, assignment, second, -1, "calculation")
    assert (saved.write.error_category, saved.write.error_note) == ("calculation", "")
    label = HumanLabel.objects.get(step=second, annotator=ann1)
    assert (label.value, label.error_category, label.error_note) == (-1, "calculation", "")
    change = LabelChange.objects.get(step=second)
    assert (change.old_value, change.new_value, change.old_category, change.new_category) == (None, -1, "", "calculation")

    # Changing only the category is a change (and kept); "other" takes a note.
    _save(ann1, assignment, second, -1, "other", "misread the axis label")
    label.refresh_from_db()
    assert (label.error_category, label.error_note) == ("other", "misread the axis label")
    latest = LabelChange.objects.filter(step=second).first()
    assert (latest.old_category, latest.new_category, latest.new_note) == ("calculation", "other", "misread the axis label")
    # The same save again changes nothing.
    count = LabelChange.objects.filter(step=second).count()
    _save(ann1, assignment, second, -1, "other", "misread the axis label")
    assert LabelChange.objects.filter(step=second).count() == count
    # Relabelled correct: the category goes (a save always sends the whole label).
    _save(ann1, assignment, second, 1)
    label.refresh_from_db()
    assert (label.value, label.error_category, label.error_note) == (1, "", "")
    assert LabelChange.objects.filter(step=second).first().old_category == "other"
    _save(ann1, assignment, first, -1)  # incorrect without a category is fine
    assert HumanLabel.objects.get(step=first, annotator=ann1).error_category == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "category", "note", "field"),
    [
        (-1, "astrology", None, "error_category"),  # not in the project's list
        (1, "reasoning", None, "error_category"),  # only on incorrect labels
        (0, "reasoning", None, "error_category"),
        (-1, "reasoning", "a note", "error_note"),  # a note only with "other"
        (-1, 7, None, "error_category"),
        (-1, "other", ["x"], "error_note"),
    ],
)
def test_bad_categories_are_refused_naming_the_field_and_nothing_changes(categorised, value, category, note, field):
    project, solution, (ann1, _) = categorised
    assignment = next_assignment(project=project, annotator=ann1)
    step = _steps(solution)[1]
    _save(ann1, assignment, step, -1, "knowledge")
    before = list(HumanLabel.objects.values_list("value", "error_category", "error_note"))
    changes = LabelChange.objects.count()
    with pytest.raises(LabelRejected) as raised:
        _save(ann1, assignment, step, value, category, note)
    assert raised.value.field == field
    assert list(HumanLabel.objects.values_list("value", "error_category", "error_note")) == before
    assert LabelChange.objects.count() == changes


@pytest.mark.django_db
def test_a_project_without_categories_refuses_them_and_the_list_is_the_projects(categorised, make_user):
    project, solution, (ann1, _) = categorised
    project.error_categories = ["misread the figure", "other"]
    project.save()
    assignment = next_assignment(project=project, annotator=ann1)
    step = _steps(solution)[0]
    with pytest.raises(LabelRejected, match="misread the figure, other"):
        _save(ann1, assignment, step, -1, "reasoning")  # a default, but not in this project's list
    _save(ann1, assignment, step, -1, "misread the figure")
    project.error_categories_enabled = False
    project.save()
    with pytest.raises(LabelRejected, match="does not use error categories"):
        _save(ann1, assignment, step, -1, "other")
    assert HumanLabel.objects.get(step=step).error_category == "misread the figure"


@pytest.mark.django_db
def test_outsiders_learn_nothing_from_a_bad_category(categorised, make_user):
    project, solution, (ann1, ann2) = categorised
    assignment = next_assignment(project=project, annotator=ann1)
    step = _steps(solution)[0]
    for intruder in (make_user("outsider"), ann2):
        with pytest.raises(Http404):
            _save(intruder, assignment, step, -1, "astrology")
    assert not HumanLabel.objects.exists()


@pytest.mark.django_db
def test_the_api_takes_and_returns_the_category(categorised):
    project, solution, (ann1, _) = categorised
    client = APIClient()
    client.force_authenticate(ann1)
    taken = client.post(reverse("api:project-next", kwargs={"project_id": project.id})).json()
    assignment_id = taken["assignment"]["id"]
    step_id = taken["solution"]["steps"][1]["id"]
    url = reverse("api:assignment-step-label", kwargs={"project_id": project.id, "assignment_id": assignment_id, "step_id": step_id})
    response = client.put(url, {"value": -1, "error_category": "other", "error_note": "wrong unit"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["error_category"] == "other" and response.json()["error_note"] == "wrong unit"
    bad = client.put(url, {"value": 1, "error_category": "reasoning"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "error_category"
    mine = client.get(reverse("api:assignment-labels", kwargs={"project_id": project.id, "assignment_id": assignment_id})).json()
    assert [(label["value"], label["error_category"], label["error_note"]) for label in mine["labels"]] == [
        (None, "", ""), (-1, "other", "wrong unit"), (None, "", "")
    ]
    detail = client.get(reverse("api:project", kwargs={"project_id": project.id})).json()
    assert detail["error_categories"] == list(DEFAULT_ERROR_CATEGORIES)


def _labelled_by_two(project, solution, annotators):
    first, second, third = _steps(solution)
    ann1, ann2 = annotators
    a1 = next_assignment(project=project, annotator=ann1)
    a2 = next_assignment(project=project, annotator=ann2)
    _save(ann1, a1, first, -1)
    _save(ann1, a1, second, -1, "calculation")
    _save(ann1, a1, third, -1, "other", "carried the error")
    _save(ann2, a2, first, -1, "visual perception")
    _save(ann2, a2, second, -1, "calculation")
    _save(ann2, a2, third, -1)
    Assignment.objects.update(status=Assignment.Status.SUBMITTED)


EXPECTED_CATEGORIES = [["visual perception"], ["calculation"], ["other"]]


@pytest.mark.django_db
def test_every_export_format_carries_the_categories_per_step(categorised):
    project, solution, annotators = categorised
    _labelled_by_two(project, solution, annotators)
    from annotation.models import AutoLabel

    for step in _steps(solution):  # the raw format needs MC counts on every step
        AutoLabel.objects.create(step=step, kind="mc", source="mc", score=0.5, num_correct=1, num_total=2, estimate="exhaustive")

    def export(name, **options):
        out = io.BytesIO()
        written = dataset_export(project=project, format_name=name, out=out, filters=ExportFilters(label_source="human"), options=options)
        assert written == 1, name
        return out.getvalue()

    line = json.loads(export("visualprocessbench"))
    assert line["response"]["error_categories"] == EXPECTED_CATEGORIES
    assert line["response"]["process_correctness"] == [-1, -1, -1]
    conversation = json.loads(export("visualprm400k"))
    assert conversation["error_categories"] == EXPECTED_CATEGORIES[: (len(conversation["conversations"]) - 1) // 2]
    raw = json.loads(export("visualprm400k-raw"))
    assert [step["error_categories"] for step in raw["steps_with_score"]] == EXPECTED_CATEGORIES
    rows = [json.loads(line) for line in export("trl-stepwise", file_format="jsonl").splitlines()]
    assert rows[0]["error_categories"] == EXPECTED_CATEGORIES[: len(rows[0]["labels"])]
    table = pq.read_table(io.BytesIO(export("trl-stepwise", file_format="parquet")))
    assert table.column("error_categories").to_pylist()[0] == EXPECTED_CATEGORIES[: len(rows[0]["labels"])]

    # A project without categories exports exactly as before: no extension field.
    project.error_categories_enabled = False
    project.save()
    assert "error_categories" not in json.loads(export("visualprocessbench"))["response"]
    assert "error_categories" not in json.loads(export("visualprm400k"))
    assert "error_categories" not in pq.read_table(io.BytesIO(export("trl-stepwise", file_format="parquet"))).column_names


@pytest.mark.django_db
def test_the_dashboard_counts_each_category(categorised, client):
    project, solution, annotators = categorised
    _labelled_by_two(project, solution, annotators)
    dashboard = project_dashboard(project=project)
    counts = dict(dashboard.error_categories)
    assert counts == {
        "visual perception": 1, "reasoning": 0, "knowledge": 0, "calculation": 2, "misunderstood question": 0,
        "other": 1, "(none given)": 2,
    }
    admin = annotators[0]
    from annotation.models import Membership

    Membership.objects.filter(user=admin).update(role=Role.ADMIN)
    client.force_login(admin)
    html = client.get(reverse("dashboard", kwargs={"project_id": project.id})).content.decode()
    assert 'id="error-categories"' in html
    assert 'data-category="calculation"><td>calculation</td><td class="count">2</td>' in html


# --- in the browser ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_picker_opens_after_incorrect_and_keys_choose_the_category(page, categorised):
    project, solution, (ann1, _) = categorised
    log_in(page, "ann1")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step.focused")
    page.keyboard.press("c")  # step 1 correct: no picker
    assert page.locator("#error-picker").is_hidden()
    page.keyboard.press("x")  # step 2 incorrect: the picker opens on it, focus stays
    picker = page.locator("#steps li.step[data-index='1'] #error-picker")
    picker.wait_for(state="visible")
    assert page.eval_on_selector("#steps li.step.focused", "r => r.dataset.index") == "1"
    screenshot(page, "error-category-picker")
    page.keyboard.press("4")  # calculation
    assert page.locator("#error-picker").is_hidden()
    assert page.eval_on_selector("#steps li.step.focused", "r => r.dataset.index") == "2"
    page.keyboard.press("3")  # step 3 incorrect, then other with a note
    page.locator("#steps li.step[data-index='2'] #error-picker").wait_for(state="visible")
    page.keyboard.press("6")
    page.locator(".error-note").wait_for(state="visible")
    page.keyboard.type("used the wrong bar")
    page.keyboard.press("Enter")
    assert page.locator("#error-picker").is_hidden()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#steps li.step')).every(r => r.dataset.save === 'saved')", timeout=15000
    )
    screenshot(page, "error-category-saved")
    assert page.locator("#steps li.step[data-index='1'] .error-cat").inner_text() == "error: calculation"
    stored = list(
        HumanLabel.objects.filter(annotator=ann1).order_by("step__index").values_list("value", "error_category", "error_note")
    )
    assert stored == [(1, "", ""), (-1, "calculation", ""), (-1, "other", "used the wrong bar")]

    # Back on step 2 (k), incorrect again: the picker offers a new choice; reload shows what is stored.
    page.keyboard.press("k")
    page.keyboard.press("x")
    page.locator("#steps li.step[data-index='1'] #error-picker").wait_for(state="visible")
    page.keyboard.press("1")  # visual perception replaces calculation
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#steps li.step')).every(r => r.dataset.save === 'saved')", timeout=15000
    )
    page.reload()
    page.wait_for_selector("#steps li.step.focused")
    assert page.locator("#steps li.step[data-index='1'] .error-cat").inner_text() == "error: visual perception"
    assert page.locator("#steps li.step[data-index='2'] .error-cat").inner_text() == "error: other: used the wrong bar"
    # Escape skips: incorrect with no category.
    page.locator("#steps li.step[data-index='0']").click()
    page.keyboard.press("x")
    page.locator("#error-picker").wait_for(state="visible")
    page.keyboard.press("Escape")
    assert page.locator("#error-picker").is_hidden()
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#steps li.step')).every(r => r.dataset.save === 'saved')", timeout=15000
    )
    stored = list(
        HumanLabel.objects.filter(annotator=ann1).order_by("step__index").values_list("value", "error_category", "error_note")
    )
    assert stored == [(-1, "", ""), (-1, "visual perception", ""), (-1, "other", "used the wrong bar")]


@pytest.mark.django_db(transaction=True)
def test_no_picker_where_the_project_has_no_categories(page, categorised):
    project, solution, (ann1, _) = categorised
    Project.objects.filter(pk=project.pk).update(error_categories_enabled=False)
    log_in(page, "ann1")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step.focused")
    page.keyboard.type("xcx", delay=30)
    assert page.locator("#error-picker").count() == 0
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#steps li.step')).every(r => r.dataset.save === 'saved')", timeout=15000
    )
    assert list(HumanLabel.objects.order_by("step__index").values_list("value", flat=True)) == [-1, 1, -1]
