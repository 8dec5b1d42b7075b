"""API token authentication in one lean query.

DRF's TokenAuthentication builds an ORM query joining the token and its user on every API call;
annotators make one call per click, so the same lookup is done here as a single parameterised
statement (prepared by psycopg after a few runs) and the user is built straight from the row.
Measured (benchmarks/annotation_load.py, back to back): the ORM lookup took 242 label saves/s
and 5.6 ms of server CPU per request, this statement 294 and 4.5 ms.

Each web process also remembers a token's row for STEPMARK_TOKEN_CACHE_SECONDS (default 2 s;
0 turns it off), so an annotator clicking away costs no query to say who they are. Revoking a
token or deactivating a user therefore takes effect within those seconds. What the user may
see or change is checked against the database on every request all the same.
"""

from __future__ import annotations

import time
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from stepmark import rows


@cache
def _user_for_token_sql(user_model) -> str:
    return (
        f'SELECT {rows.columns(user_model, "u")} FROM "{Token._meta.db_table}" t '
        f'JOIN "{user_model._meta.db_table}" u ON u."{user_model._meta.pk.column}" = t."user_id" '
        f'WHERE t."key" = %s'
    )


_clock = time.monotonic
_CACHE_LIMIT = 10_000
_recent: dict[str, tuple[float, tuple]] = {}  # token key -> (expires at, the user's row)


def _user_row(user_model, key: str) -> tuple | None:
    ttl = settings.STEPMARK_TOKEN_CACHE_SECONDS
    now = _clock()
    if ttl > 0:
        hit = _recent.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    with connection.cursor() as cursor:
        cursor.execute(_user_for_token_sql(user_model), [key])
        row = cursor.fetchone()
    if ttl > 0 and row is not None:
        if len(_recent) >= _CACHE_LIMIT:
            _recent.clear()
        _recent[key] = (now + ttl, row)
    return row


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's, looked up with one statement (or remembered briefly)."""

    def authenticate_credentials(self, key: str):
        user_model = get_user_model()
        row = _user_row(user_model, key)
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = rows.instance(user_model, row)  # a fresh instance per request: nothing shared
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)
