"""A project admin who is not staff sets up a project in headless Chromium, under the site's content
policy: creates it, edits its settings (a refused value shown on the form, the live guidelines
preview), invites a new person who signs up and reaches the labelling page, and changes a password."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from annotation.models import HumanLabel, Invitation, Membership, Project, Role
from tests.conftest import log_in, screenshot
from tests.factories import make_solution
from tests.test_csp_pages import RECORD_VIOLATIONS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lead(make_user):
    user = make_user("lead")
    user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotation"))
    assert not user.is_staff
    return user


def test_a_non_staff_lead_creates_a_project_edits_settings_and_invites_a_labeller(strict_page, browser, live_server, lead):
    page = strict_page
    errors: list[str] = []
    # Script errors and content-policy refusals; a form refused with 400 is logged too, and expected here.
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, "lead")
    page.click("#new-project")
    page.fill("#id_name", "Charts batch 1")
    page.select_option("#id_label_mode", "first_error")
    page.fill("#id_overlap", "1")
    screenshot(page, "project-create")
    page.click("button:has-text('Create project')")
    page.wait_for_selector("h1:has-text('Settings · Charts batch 1')")
    project = Project.objects.get(name="Charts batch 1")
    assert list(project.memberships.values_list("user__username", "role")) == [("lead", "admin")]
    assert project.label_mode == "first_error"

    # The live preview renders the markdown (and its math) as it is typed; typing waits for htmx to have
    # set up the page (a loaded machine parses the heading well before the scripts run).
    page.wait_for_load_state("load")
    page.fill("#id_guidelines", "# Rules\n\nJudge **each** step on its own; halves are $\\frac{1}{2}$.\n\n<script>alert(1)</script>")
    page.wait_for_selector("#guidelines-preview h1:has-text('Rules')")
    page.wait_for_selector("#guidelines-preview strong:has-text('each')")
    page.wait_for_selector("#guidelines-preview .katex .mfrac")
    assert page.locator("#guidelines-preview script").count() == 0
    assert page.evaluate("window.__cspViolations") == []  # htmx and KaTeX ran under the policy

    # A refused value is shown beside its field, and nothing is saved.
    page.fill("#id_gold_rate", "1.5")
    page.fill("#id_max_steps", "10")
    page.check("#id_show_machine_labels")
    page.click("#save-settings")
    page.wait_for_selector("#error-gold_rate")
    assert "a number from 0 to 1" in page.locator("#error-gold_rate").inner_text()
    assert "Nothing was saved" in page.locator("#form-errors").inner_text()
    assert page.input_value("#id_guidelines").startswith("# Rules")  # what was typed is kept
    screenshot(page, "project-settings-error")
    project.refresh_from_db()
    assert (project.gold_rate, project.guidelines, project.max_steps) == (0.0, "", None)

    page.fill("#id_gold_rate", "0.05")
    page.click("#save-settings")
    page.wait_for_selector(".messages li:has-text('Settings saved.')")
    screenshot(page, "project-settings-saved")
    project.refresh_from_db()
    assert (project.gold_rate, project.max_steps, project.show_machine_labels) == (0.05, 10, True)
    assert project.guidelines.startswith("# Rules")

    # Something to label (the import page is another page's business).
    make_solution(project, "q1", ["We add $2+3$.", "So it is 5."])

    # Members: the lead is the only admin, protected; an invitation gives a link, e-mailed too.
    page.click("a.project-members")
    page.wait_for_selector("h1:has-text('Members · Charts batch 1')")
    assert page.locator("#members tr[data-member=lead]").inner_text().count("only admin") == 1
    page.fill("#invite_email", "newbie@example.com")
    page.select_option("#invite_role", "reviewer")
    page.select_option("#invite_role", "annotator")
    page.click("button:has-text('Create invitation link')")
    page.wait_for_selector("#invitation-link")
    link = page.input_value("#invitation-link")
    assert link.startswith(live_server.url + "/invitations/")
    assert page.locator("#new-invitation").inner_text().count("newbie@example.com") == 1
    screenshot(page, "project-members-invited")
    from django.core import mail

    assert [m.to for m in mail.outbox] == [["newbie@example.com"]] and link in mail.outbox[0].body

    # The invited person: a fresh browser, no account yet.
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    try:
        newbie = context.new_page()
        newbie.goto(link)
        newbie.wait_for_selector("h1:has-text('Join Charts batch 1')")
        newbie.fill("#id_username", "newbie")
        newbie.fill("#id_password1", "12345678")
        newbie.fill("#id_password2", "12345678")
        newbie.click("#create-account")
        newbie.wait_for_selector("#error-password1")
        assert "entirely numeric" in newbie.locator("#error-password1").inner_text()
        screenshot(newbie, "invitation-signup-refused")
        assert not get_user_model().objects.filter(username="newbie").exists()
        newbie.fill("#id_password1", "Tr1cky-Horse-9")
        newbie.fill("#id_password2", "Tr1cky-Horse-9")
        newbie.click("#create-account")
        newbie.wait_for_selector(".messages li:has-text('you joined Charts batch 1 as annotator')")
        screenshot(newbie, "invitation-joined-home")
        user = get_user_model().objects.get(username="newbie")
        assert Membership.objects.get(project=project, user=user).role == Role.ANNOTATOR
        assert newbie.locator("a.project-settings").count() == 0  # an annotator has no admin links
        newbie.click("section.project button:has-text('Start labelling')")
        newbie.wait_for_selector("#steps li.step")
        assert "/assignments/" in newbie.url
        assert newbie.locator("#steps li.step").count() == 2
        newbie.wait_for_selector("#steps li.step.focused")  # its keys are set up, as the labelling tests wait
        newbie.keyboard.press("c")  # and labels: the first step is correct
        newbie.wait_for_selector("#steps li.step:nth-child(1).is-correct")
        screenshot(newbie, "invitation-labelling")
        assert list(HumanLabel.objects.filter(annotator__username="newbie").values_list("value", flat=True)) == [1]
        # The link is used up.
        newbie.goto(link)
        newbie.wait_for_selector("#invitation-refused")
        assert "used already" in newbie.locator("#invitation-refused").inner_text()
    finally:
        context.close()

    page.goto(f"/projects/{project.id}/members/")
    assert page.locator("#members tr[data-member=newbie]").count() == 1
    assert page.locator("#invitations tr[data-state=used]").inner_text().count("used by newbie") == 1
    assert Invitation.objects.get().accepted_by == user

    # An existing account is added by e-mail; the last admin cannot step down (a message, not an error page).
    helper = get_user_model().objects.create_user(username="helper", email="helper@example.com", password="pw-helper")
    page.fill("#add_user", "helper@example.com")
    page.select_option("#add_role", "reviewer")
    page.click("button:has-text('Add member')")
    page.wait_for_selector("#members tr[data-member=helper]")
    assert Membership.objects.get(project=project, user=helper).role == Role.REVIEWER
    page.select_option("#members tr[data-member=lead] select", "annotator")
    page.click("#members tr[data-member=lead] button.change-role")
    page.wait_for_selector(".messages li.error")
    assert "lead is the project's only admin" in page.locator(".messages li.error").inner_text()
    screenshot(page, "project-members-last-admin")
    assert Membership.objects.get(project=project, user=lead).role == Role.ADMIN

    # The lead changes their own password from the header link.
    page.click("#change-password")
    page.wait_for_selector("#password-change-form")
    page.fill("#id_old_password", "pw-lead")
    page.fill("#id_new_password1", "Another-Lead-77")
    page.fill("#id_new_password2", "Another-Lead-77")
    page.click("button:has-text('Change password')")
    page.wait_for_selector("#password-changed")
    screenshot(page, "password-changed")
    lead.refresh_from_db()
    assert lead.check_password("Another-Lead-77")
    assert not errors, errors  # no script errors, no content-policy refusals
