"""API token authentication in one lean query.

DRF's TokenAuthentication builds an ORM query joining the token and its user on every API call;
annotators make one call per click, so the same lookup is done here as a single parameterised
statement (prepared by psycopg after a few runs) and the user is built straight from the row.
Revoking a token or deactivating a user takes effect on the next request, as with DRF's class.
"""

from __future__ import annotations

from functools import cache

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


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's, looked up with one statement."""

    def authenticate_credentials(self, key: str):
        user_model = get_user_model()
        with connection.cursor() as cursor:
            cursor.execute(_user_for_token_sql(user_model), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = rows.instance(user_model, row)
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)
