"""API tokens: the lean lookup accepts exactly what DRF's would, and a revoked token stops at once."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from annotation.models import Project, Role
from tests.factories import add_member

pytestmark = pytest.mark.django_db


def _get(key: str | None):
    headers = {"Authorization": f"Token {key}"} if key is not None else {}
    return Client().get("/api/projects/", headers=headers)


def test_a_token_authenticates_its_user_and_nothing_else(make_user):
    alice = make_user("alice")
    project = Project.objects.create(name="mine")
    add_member(project, alice, Role.ANNOTATOR)
    token = Token.objects.create(user=alice)

    response = _get(token.key)
    assert response.status_code == 200
    assert [row["id"] for row in response.json()] == [project.id]

    for bad in ("0" * 40, token.key[:-1], token.key + "x"):
        refused = _get(bad)
        assert refused.status_code == 401 and refused.json()["detail"] == "Invalid token."
    anonymous = _get(None)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Token"


@pytest.fixture(autouse=True)
def _forget_tokens():
    from stepmark import authentication

    authentication._recent.clear()
    yield
    authentication._recent.clear()


def test_revoking_or_deactivating_takes_effect_on_the_next_call(make_user, settings):
    settings.STEPMARK_TOKEN_CACHE_SECONDS = 0
    bob = make_user("bob")
    token = Token.objects.create(user=bob)
    assert _get(token.key).status_code == 200
    bob.is_active = False
    bob.save()
    assert _get(token.key).json()["detail"] == "User inactive or deleted."
    bob.is_active = True
    bob.save()
    key = token.key
    token.delete()
    assert _get(key).status_code == 401


def test_a_remembered_token_is_forgotten_after_its_seconds(make_user, settings, monkeypatch):
    from stepmark import authentication

    settings.STEPMARK_TOKEN_CACHE_SECONDS = 2
    carol = make_user("carol")
    token = Token.objects.create(user=carol)
    clock = [1000.0]
    monkeypatch.setattr(authentication, "_clock", lambda: clock[0])
    assert _get(token.key).status_code == 200
    key = token.key
    token.delete()
    clock[0] += 1.5
    assert _get(key).status_code == 200, "within its seconds the remembered token still answers"
    clock[0] += 1.0
    refused = _get(key)
    assert refused.status_code == 401 and refused.json()["detail"] == "Invalid token."
