"""Settings read from the environment fail loudly on bad values, naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from stepmark.env import database_from_url, env_bool, env_float, env_int


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="X_INT='twelve' is not an integer"):
        env_int("X_INT", 1)
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL"):
        env_bool("X_BOOL", False)
    monkeypatch.setenv("X_FLOAT", "1,5")
    with pytest.raises(ImproperlyConfigured, match="X_FLOAT"):
        env_float("X_FLOAT", 0.0)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_INT", 5, minimum=1)


def test_database_urls():
    pg = database_from_url("postgres://u:p%40ss@db.example:6543/stepmark?sslmode=require")
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == ("stepmark", "u", "p@ss", "db.example", "6543")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("sqlite:////var/x.db")["NAME"] == "/var/x.db"
    assert database_from_url("sqlite:///rel/x.db")["NAME"] == "rel/x.db"
    with pytest.raises(ImproperlyConfigured, match="unsupported scheme"):
        database_from_url("mysql://x/y")
