import pytest

from annotation.models import Membership, Project, Role
from tests.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_home_lists_only_my_projects(page, make_user):
    annotator = make_user("ann")
    mine = Project.objects.create(name="Geometry batch")
    Project.objects.create(name="Secret other project")
    Membership.objects.create(project=mine, user=annotator, role=Role.ANNOTATOR)

    log_in(page, "ann")
    assert page.locator("h1").inner_text() == "My projects"
    cards = page.locator("section.project h2")
    assert cards.all_inner_texts() == ["Geometry batch"]
    assert "Secret other project" not in page.content()
    screenshot(page, "home")


def test_home_requires_login(page):
    page.goto("/")
    assert "/accounts/login/" in page.url
    screenshot(page, "login")
