"""Two annotators label the same item, disagree, and a reviewer adjudicates it in the browser."""

import pytest

from annotation.models import AutoLabel, GoldLabel, LabelChange, Project, Role
from annotation.review import review_queue
from annotation.services.labels import step_label_set
from annotation.services.queue import next_assignment
from annotation.services.submit import assignment_submit
from tests.conftest import log_in, screenshot, take_next_item
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)


def _label_in_browser(page, project, username, keys):
    log_in(page, username)
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step.focused")
    for position, key in enumerate(keys, start=1):
        page.keyboard.press(key)
        page.wait_for_selector(f"#steps li.step:nth-child({position})[data-value]:not([data-value=''])")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Nothing left to label")
    page.context.clear_cookies()


def test_two_annotators_then_reviewer_adjudicates(page, make_user):
    project = Project.objects.create(name="Double", overlap=2)
    solution = make_solution(project, "q1", ["First $x=1$.", "Then $x+1=3$.", "Answer 3."])
    steps = list(solution.steps.order_by("index"))
    AutoLabel.objects.create(step=steps[1], kind="mc", source="test", score=0.25, num_correct=4, num_total=16)
    for name, role in (("ann_a", Role.ANNOTATOR), ("ann_b", Role.ANNOTATOR), ("rev", Role.REVIEWER)):
        add_member(project, make_user(name), role)

    _label_in_browser(page, project, "ann_a", ["c", "x", "x"])
    _label_in_browser(page, project, "ann_b", ["c", "c", "x"])

    queue = review_queue(project=project)
    assert [c.solution_id for c in queue] == [solution.id]
    assert "annotators disagree" in queue[0].reasons and "humans disagree with MC" in queue[0].reasons

    log_in(page, "rev")
    page.goto(f"/projects/{project.id}/review/")
    page.click("text=Review →")
    page.wait_for_selector("table.review")
    header = page.locator("table.review thead th").all_inner_texts()
    assert header == ["#", "Step", "ann_a", "ann_b", "MC", "PRM", "Gold"]
    row2 = page.locator(f"#review-step-{steps[1].id}")
    assert row2.locator("td.lab").all_inner_texts()[:2] == ["−1", "+1"]
    row2.locator("button[value='-1']").click()
    page.wait_for_selector(f"#review-step-{steps[1].id}[data-gold='-1']")
    screenshot(page, "review-page")

    gold = GoldLabel.objects.get(step=steps[1])
    assert gold.value == -1 and gold.source == GoldLabel.Source.ADJUDICATED and gold.decided_by.username == "rev"
    change = LabelChange.objects.filter(step=steps[1], is_gold=True).get()
    assert (change.old_value, change.new_value, change.changed_by.username) == (None, -1, "rev")
    # Adjudicated solutions leave the queue unless asked for.
    assert review_queue(project=project) == []
    assert [c.solution_id for c in review_queue(project=project, include_adjudicated=True)] == [solution.id]


def test_label_history_keeps_every_change_and_never_touches_other_annotators(make_user):
    project = Project.objects.create(name="History")
    step = make_solution(project, "q", ["only step"]).steps.get()
    a, b = make_user("a"), make_user("b")
    step_label_set(step_id=step.id, annotator_id=a.id, value=1)
    step_label_set(step_id=step.id, annotator_id=b.id, value=-1)
    step_label_set(step_id=step.id, annotator_id=a.id, value=0)
    assert dict(step.human_labels.values_list("annotator__username", "value")) == {"a": 0, "b": -1}
    changes = list(LabelChange.objects.filter(step=step).order_by("id").values_list("annotator__username", "old_value", "new_value"))
    assert changes == [("a", None, 1), ("b", None, -1), ("a", 1, 0)]


def test_review_access(client, make_user):
    project = Project.objects.create(name="Locked")
    solution = make_solution(project, "q", ["s"])
    step = solution.steps.get()
    annotator = make_user("plain")
    add_member(project, annotator, Role.ANNOTATOR)
    assignment = next_assignment(project=project, annotator=annotator)
    step_label_set(step_id=step.id, annotator_id=annotator.id, value=1)
    assignment_submit(assignment=assignment)
    urls = [
        ("get", f"/projects/{project.id}/review/"),
        ("get", f"/projects/{project.id}/review/solutions/{solution.id}/"),
        ("post", f"/projects/{project.id}/review/solutions/{solution.id}/steps/{step.id}/gold/"),
    ]
    make_user("outsider")
    client.login(username="outsider", password="pw-outsider")
    for method, url in urls:
        assert getattr(client, method)(url, {"value": "1"} if method == "post" else None).status_code == 404, url
    client.login(username="plain", password="pw-plain")
    for method, url in urls:
        assert getattr(client, method)(url, {"value": "1"} if method == "post" else None).status_code == 403, url
    assert not GoldLabel.objects.exists()
