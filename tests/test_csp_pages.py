"""The pages work under the content security policy production sends (issue 15, item 5).

The policy is the same in every mode; here a real browser records every violation while an
annotator opens the labelling page (KaTeX draws the math, htmx saves a label) and a reviewer
opens the review page.
"""

from __future__ import annotations

import pytest

from annotation.models import HumanLabel, Project, Role
from tests.conftest import log_in, screenshot, take_next_item, wait_for
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_labelling_page_works_under_the_policy(strict_page, make_user):
    page = strict_page
    project = Project.objects.create(name="CSP", overlap=1)
    solution = make_solution(project, "q1", ["We add $2+3$.", "So $$2+3=5.$$"])
    annotator = make_user("ann")
    add_member(project, annotator, Role.ANNOTATOR)
    page.add_init_script(RECORD_VIOLATIONS)
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    log_in(page, "ann")
    response = page.goto(f"/projects/{project.id}/next/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step.focused")
    page.wait_for_selector("#steps .katex")  # KaTeX ran and drew the math
    page.keyboard.press("c")  # htmx posts the label and swaps the row in
    page.wait_for_selector("#steps li.step:nth-child(1).is-correct")
    # The row is marked at once and saved in the background: wait for the save to land.
    saved = wait_for(lambda: HumanLabel.objects.filter(step=solution.steps.get(index=0)).first(), timeout=20,
                     message="the label saved")
    assert saved.value == 1
    screenshot(page, "label-page-under-csp")
    assert page.evaluate("window.__cspViolations") == []
    assert not [text for text in console_errors if "Content Security Policy" in text], console_errors
