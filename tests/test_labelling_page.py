"""The labelling page in a real browser: keyboard-only labelling, reload, submit, safety of model text."""

import pytest

from annotation.models import Assignment, HumanLabel, Project, Role
from tests.conftest import log_in, screenshot, take_next_item, wait_for
from tests.factories import add_member, make_solution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def labelling_project(make_user):
    project = Project.objects.create(name="Demo labels", overlap=1, guidelines="# Rules\nJudge each step **on its own**.")
    first = make_solution(project, "q1", ["We add $2+3$.", "So $2+3=5$.", "The answer is $\\boxed{5}$."])
    second = make_solution(project, "q2", ["Second item, step one.", "Step two."], color=(20, 120, 200))
    annotator = make_user("ann")
    add_member(project, annotator, Role.ANNOTATOR)
    return project, first, second, annotator


def test_annotator_labels_with_keyboard_reloads_and_submits(page, labelling_project):
    project, first, second, annotator = labelling_project
    log_in(page, "ann")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step.focused")
    screenshot(page, "label-page-start")

    # Keyboard alone: correct, neutral, then move back up and change the first to incorrect, then correct the last.
    page.keyboard.press("c")
    page.wait_for_selector("#steps li.step:nth-child(1).is-correct")
    page.keyboard.press("2")
    page.wait_for_selector("#steps li.step:nth-child(2).is-neutral")
    page.keyboard.press("x")
    page.wait_for_selector("#steps li.step:nth-child(3).is-incorrect")
    # The last step keeps the focus mark after its row is swapped in (one marked row, always).
    page.wait_for_timeout(300)  # past htmx's settle delay
    assert page.eval_on_selector_all("#steps li.step.focused", "rows => rows.map(r => r.dataset.index)") == ["2"]
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("1")  # step 2 becomes correct
    page.wait_for_selector("#steps li.step:nth-child(2).is-correct")
    page.keyboard.press("u")  # undo: step 2 back to neutral
    page.wait_for_selector("#steps li.step:nth-child(2).is-neutral")
    # The row shows the value at once; the database has it once every row says saved.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#steps li.step')).every(r => r.dataset.save === 'saved')", timeout=15000
    )

    steps = list(first.steps.order_by("index"))
    expected = {steps[0].id: 1, steps[1].id: 0, steps[2].id: -1}

    def stored():
        return dict(HumanLabel.objects.filter(annotator=annotator).values_list("step_id", "value"))

    # The page marks a step at once and saves in the background: wait for the last save to land.
    wait_for(lambda: stored() == expected, timeout=20, message="the labels saved")
    assert stored() == expected

    page.reload()
    page.wait_for_selector("#steps li.step")
    assert page.locator("#steps li.step").evaluate_all("els => els.map(e => e.dataset.value)") == ["1", "0", "-1"]
    assert page.locator("#progress-count").inner_text() == "3 / 3 labelled"
    page.keyboard.press("?")
    assert page.locator("#keys-dialog").is_visible()
    screenshot(page, "label-page-keys")
    page.keyboard.press("Escape")
    screenshot(page, "label-page-labelled")

    page.keyboard.press("Enter")
    # Selectors, not wait_for_function: the page's content policy forbids the eval that polling uses.
    page.wait_for_selector(".crumbs:has-text('item q2')")
    done = Assignment.objects.get(annotator=annotator, solution=first)
    assert done.status == Assignment.Status.SUBMITTED
    assert Assignment.objects.get(annotator=annotator, solution=second).status == Assignment.Status.ASSIGNED


def test_submit_refused_until_every_step_is_labelled(page, labelling_project):
    project, first, _, annotator = labelling_project
    log_in(page, "ann")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step.focused")
    page.keyboard.press("c")
    page.wait_for_selector("#steps li.step:nth-child(1).is-correct")
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages li")
    assert "step 2, 3 has no label" in page.locator(".messages").inner_text()
    assert Assignment.objects.get(annotator=annotator, solution=first).status == Assignment.Status.ASSIGNED


def test_model_text_cannot_run_script_or_open_links(page, make_user):
    project = Project.objects.create(name="Hostile text")
    make_solution(
        project,
        "evil",
        [
            "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>",
            "Click $\\href{javascript:window.__pwned=3}{here}$ and \\(\\url{javascript:alert(1)}\\)",
        ],
    )
    add_member(project, make_user("ann2"), Role.ANNOTATOR)
    log_in(page, "ann2")
    take_next_item(page, project.id)
    page.wait_for_selector("#steps li.step")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#steps script").count() == 0
    assert page.locator("#steps img").count() == 0
    assert page.locator("#steps a[href^='javascript']").count() == 0
    # The text is shown, inert.
    assert "<script>" in page.locator("#steps li.step").first.inner_text()
    page.locator("#steps a").evaluate_all("els => els.forEach(e => e.click())")
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "label-page-hostile-text")


def test_outsider_gets_404_for_every_labelling_url(client, labelling_project, make_user):
    project, first, _, annotator = labelling_project
    from annotation.services.queue import next_assignment

    assignment = next_assignment(project=project, annotator=annotator)
    step = first.steps.first()
    image_sha = first.item.images.first().sha256
    make_user("outsider")
    client.login(username="outsider", password="pw-outsider")
    base = f"/projects/{project.id}/assignments/{assignment.id}"
    assert client.get(f"/projects/{project.id}/next/").status_code == 404
    assert client.get(f"{base}/").status_code == 404
    assert client.post(f"{base}/steps/{step.id}/label/", {"value": "1"}).status_code == 404
    assert client.post(f"{base}/submit/").status_code == 404
    assert client.post(f"{base}/skip/").status_code == 404
    assert client.post(f"{base}/heartbeat/", {"seconds": "5"}).status_code == 404
    assert client.get(f"/images/{image_sha}/").status_code == 404
    assert not HumanLabel.objects.exists()


def test_another_member_cannot_touch_my_assignment(client, labelling_project, make_user):
    project, first, _, annotator = labelling_project
    from annotation.services.queue import next_assignment

    assignment = next_assignment(project=project, annotator=annotator)
    other = make_user("other")
    add_member(project, other, Role.ANNOTATOR)
    client.login(username="other", password="pw-other")
    step = first.steps.first()
    response = client.post(f"/projects/{project.id}/assignments/{assignment.id}/steps/{step.id}/label/", {"value": "1"})
    assert response.status_code == 404
    assert not HumanLabel.objects.exists()
    # Members do see the project's images.
    assert client.get(f"/images/{first.item.images.first().sha256}/").status_code == 200


def test_next_item_is_fetched_ahead(page, labelling_project):
    project, first, second, annotator = labelling_project
    log_in(page, "ann")
    take_next_item(page, project.id)
    page.wait_for_selector("#label-app[data-next-url]", state="attached")
    next_url = page.evaluate("document.getElementById('label-app').dataset.nextUrl")
    reserved = Assignment.objects.get(annotator=annotator, solution=second)
    assert next_url == f"/projects/{project.id}/assignments/{reserved.id}/"
    assert page.locator(f"link[rel=prefetch][href='{next_url}']").count() == 1
    # The page being worked on stays the one "next" returns until it is finished.
    current = Assignment.objects.get(annotator=annotator, solution=first)
    assert page.url.endswith(f"/assignments/{current.id}/")


def test_image_placeholders_are_not_shown_in_the_question():
    from annotation.templatetags.stepmark import without_image_placeholders

    assert without_image_placeholders("How many digits?\n<image1>") == "How many digits?"
    assert without_image_placeholders("<image>\nFind x. <IMAGE2> ok") == "Find x. ok"


def test_the_page_and_each_form_save_carry_the_missing_steps(client, labelling_project):
    """The server decides which steps still need a label: the page reads them, it does not derive them."""

    project, first, _, _ = labelling_project
    steps = list(first.steps.order_by("index"))
    client.login(username="ann", password="pw-ann")
    label_page = client.post(f"/projects/{project.id}/next/", follow=True)  # taking an item is a POST
    assignment_id = label_page.redirect_chain[-1][0].rstrip("/").split("/")[-1]
    assert f'data-missing-step-ids="{",".join(str(s.id) for s in steps)}"' in label_page.content.decode()

    save_url = f"/projects/{project.id}/assignments/{assignment_id}/steps/{steps[1].id}/label/"
    # Without JavaScript each label button posts its form and the page comes back with the steps still missing.
    saved = client.post(save_url, {"value": "1"}, follow=True)
    assert f'data-missing-step-ids="{steps[0].id},{steps[2].id}"' in saved.content.decode()
    cleared = client.post(save_url, {"value": ""}, follow=True)
    assert f'data-missing-step-ids="{",".join(str(s.id) for s in steps)}"' in cleared.content.decode()
