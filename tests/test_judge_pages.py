"""Judge verdicts and reasons in the browser: hints on the labelling page (where the project shows
hints), the judge column on the review page, with the reason on demand; recorded as shown hints."""

from __future__ import annotations

import pytest

from annotation.models import AutoLabel, HumanLabel, Project, Role
from tests.conftest import log_in, screenshot, take_next_item, wait_for
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)

REASON = "The bars read 2 and 3, so their sum is 5, not 6."


def _project(show_hints: bool):
    project = Project.objects.create(name=f"Judged {show_hints}", overlap=1, show_machine_labels=show_hints)
    solution = make_solution(project, "q1", ["The bars are $2$ and $3$.", "So $2+3=6$.", "Answer 6."])
    steps = list(solution.steps.order_by("index"))
    AutoLabel.objects.create(step=steps[1], kind="mc", source="policy", score=0.25, num_correct=1, num_total=4, estimate="exhaustive")
    for step, value, reason in zip(steps, (1, -1, 0), ("Reads the figure right.", REASON, "Restates the result."), strict=True):
        AutoLabel.objects.create(step=step, kind="judge", source="qwen-vl-judge", value=value, reason=reason, prompt_version="abc")
    return project, steps


def test_judge_hints_and_reasons_on_the_labelling_and_review_pages(page, make_user):
    project, steps = _project(show_hints=True)
    add_member(project, make_user("ann"), Role.ANNOTATOR)
    add_member(project, make_user("rev"), Role.REVIEWER)

    log_in(page, "ann")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step")
    hint = page.locator(f"#step-{steps[1].id} details.judge-hint")
    assert hint.locator("summary").inner_text().strip() == "Judge ✗ incorrect"
    assert not hint.locator(".judge-reason").is_visible()  # the reason only on demand
    hint.locator("summary").click()
    assert hint.locator(".judge-reason").is_visible() and REASON in hint.locator(".judge-reason").inner_text()
    assert page.locator(f"#step-{steps[0].id} details.judge-hint summary").inner_text().strip() == "Judge ✓ correct"
    assert page.locator(f"#step-{steps[2].id} details.judge-hint summary").inner_text().strip() == "Judge ○ neutral"
    screenshot(page, "judge-labelling-page")
    # Labelling a step records the judge hint the annotator was shown.
    page.locator(f"#step-{steps[1].id} button[value='-1']").click()
    page.wait_for_selector(f"#step-{steps[1].id}[data-value='-1']")
    saved = wait_for(lambda: HumanLabel.objects.filter(step=steps[1]).first(), timeout=20, message="the label saved")
    shown = saved.shown_hints
    assert shown["judge"] == {"value": -1, "reason": REASON, "source": "qwen-vl-judge"} and shown["mc"]["score"] == 0.25
    for step, value in ((steps[0], "1"), (steps[2], "0")):
        page.locator(f"#step-{step.id} button[value='{value}']").click()
        page.wait_for_selector(f"#step-{step.id}[data-value='{value}']")
    wait_for(lambda: HumanLabel.objects.count() == 3, timeout=20, message="three labels saved")
    page.click("#submit-button")
    page.wait_for_selector("text=Nothing left to label")
    page.context.clear_cookies()

    log_in(page, "rev")
    page.goto(f"/projects/{project.id}/review/solutions/{steps[0].solution_id}/")
    page.wait_for_selector("table.review")
    assert page.locator("table.review thead th").all_inner_texts()[-3:] == ["PRM", "Judge", "Gold"]
    cell = page.locator(f"#review-step-{steps[1].id} td.judge")
    assert cell.get_attribute("data-judge") == "-1" and cell.locator("summary").inner_text().strip() == "−1"
    assert not cell.locator(".judge-reason").is_visible()
    cell.locator("summary").click()
    assert REASON in cell.locator(".judge-reason").inner_text()
    screenshot(page, "judge-review-page")
    # Setting gold redraws the row (htmx) with its judge cell.
    page.locator(f"#review-step-{steps[1].id} button[value='-1']").click()
    page.wait_for_selector(f"#review-step-{steps[1].id}[data-gold='-1'] td.judge[data-judge='-1']")


def test_no_judge_hints_where_the_project_hides_hints(page, make_user):
    project, steps = _project(show_hints=False)
    add_member(project, make_user("ann2"), Role.ANNOTATOR)
    log_in(page, "ann2")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step")
    assert page.locator("details.judge-hint").count() == 0 and page.locator(".hints").count() == 0
    assert REASON not in page.content()
