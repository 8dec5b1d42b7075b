"""API token authentication in one lean query.

DRF's TokenAuthentication loads the token and then its user; annotators make one call per
click, so here the user's columns are read in one query joined through the token, and the user
is built straight from them.

Each web process also remembers a token's user for STEPMARK_TOKEN_CACHE_SECONDS (default 2 s;
0 turns it off), so an annotator clicking away costs no query to say who they are. Revoking a
token or deactivating a user therefore takes effect within those seconds. What the user may
see or change is checked against the database on every request all the same.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

_clock = time.monotonic
_CACHE_LIMIT = 10_000
_recent: dict[str, tuple[float, tuple]] = {}  # token key -> (expires at, the user's field values)


def _attnames(user_model) -> list[str]:
    return [field.attname for field in user_model._meta.concrete_fields]


def _user_values(user_model, key: str) -> tuple | None:
    ttl = settings.STEPMARK_TOKEN_CACHE_SECONDS
    now = _clock()
    if ttl > 0:
        hit = _recent.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    values = user_model._default_manager.filter(auth_token__key=key).values_list(*_attnames(user_model)).first()
    if ttl > 0 and values is not None:
        if len(_recent) >= _CACHE_LIMIT:
            _recent.clear()
        _recent[key] = (now + ttl, values)
    return values


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's, looked up with one query (or remembered briefly)."""

    def authenticate_credentials(self, key: str):
        user_model = get_user_model()
        values = _user_values(user_model, key)
        if values is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = user_model.from_db(DEFAULT_DB_ALIAS, _attnames(user_model), values)  # fresh per request: nothing shared
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)
