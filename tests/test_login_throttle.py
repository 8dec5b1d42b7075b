"""Login throttling (issue 15, item 4): failed logins lock an account and an address out for a while.

Real login POSTs through the test server, on PostgreSQL; API tokens keep working meanwhile.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

COOL_OFF = 3


@pytest.fixture(autouse=True)
def _short_cool_off(settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=COOL_OFF)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(client: Client, username: str, password: str, address: str):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_forty_wrong_passwords_lock_the_account_then_the_cool_off_lets_it_in(make_user):
    make_user("victim")
    client = Client()
    for attempt in range(40):  # from many addresses: the account itself is locked
        log_in(client, "victim", f"guess-{attempt}", f"10.0.{attempt}.1")
    refused = log_in(client, "victim", "pw-victim", "10.9.9.9")
    assert refused.status_code == 429 and not logged_in(client)
    assert "Too many failed logins" in refused.content.decode()
    assert 'id="locked-out"' in refused.content.decode()
    time.sleep(COOL_OFF + 0.5)
    allowed = log_in(client, "victim", "pw-victim", "10.9.9.9")
    assert allowed.status_code == 302 and logged_in(client)
    assert not AccessAttempt.objects.filter(username="victim").exists()  # a success clears the count


def test_an_address_trying_many_accounts_is_locked_out(make_user):
    make_user("bystander")
    client = Client()
    for attempt in range(40):
        log_in(client, f"user-{attempt}", "wrong", "203.0.113.7")
    refused = log_in(client, "bystander", "pw-bystander", "203.0.113.7")
    assert refused.status_code == 429 and not logged_in(client)
    other = Client()
    assert log_in(other, "bystander", "pw-bystander", "198.51.100.1").status_code == 302  # another address is fine


def test_a_few_mistakes_do_not_lock_anyone_out(make_user):
    make_user("clumsy")
    client = Client()
    for _ in range(3):
        assert log_in(client, "clumsy", "typo", "192.0.2.1").status_code == 200
    assert log_in(client, "clumsy", "pw-clumsy", "192.0.2.1").status_code == 302


def test_api_tokens_are_unaffected_by_a_locked_account(make_user, project):
    from tests.factories import add_member

    user = make_user("api-user")
    add_member(project, user, "annotator")
    token = Token.objects.create(user=user)
    client = Client()
    for attempt in range(40):
        log_in(client, "api-user", f"guess-{attempt}", "10.1.1.1")
    assert log_in(client, "api-user", "pw-api-user", "10.1.1.2").status_code == 429
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = api.get("/api/projects/")
    assert response.status_code == 200 and [p["id"] for p in response.json()] == [project.pk]


@pytest.mark.django_db(transaction=True)  # the live server reads the user from another thread
def test_the_login_page_shows_the_lockout_message_in_a_browser(page, make_user, settings):
    from tests.conftest import screenshot

    settings.AXES_FAILURE_LIMIT = 3
    make_user("walker")
    page.goto("/accounts/login/")
    for attempt in range(4):
        page.fill("#id_username", "walker")
        page.fill("#id_password", f"wrong-{attempt}")
        page.click("button[type=submit]")
        page.wait_for_load_state()
    page.fill("#id_username", "walker")
    page.fill("#id_password", "pw-walker")
    page.click("button[type=submit]")
    page.wait_for_selector("#locked-out")
    assert "Too many failed logins" in page.locator("#locked-out").inner_text()
    assert page.url.endswith("/accounts/login/")  # still on the login page, not logged in
    screenshot(page, "login-locked-out")
