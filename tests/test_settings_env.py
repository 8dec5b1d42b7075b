"""Settings read from the environment fail loudly on bad values, naming the variable."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from stepmark.env import database_from_url, database_url, env_bool, env_float, env_int


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
    socket = database_from_url("postgres://postgres@/stepmark?host=/srv/stepmark/var/pgdata")
    assert (socket["NAME"], socket["HOST"], socket["PORT"], socket["OPTIONS"]) == (
        "stepmark", "/srv/stepmark/var/pgdata", "", {}
    )
    for url in ("mysql://x/y", "sqlite:///var/stepmark.sqlite3"):
        with pytest.raises(ImproperlyConfigured, match="Stepmark runs on PostgreSQL only"):
            database_from_url(url)


def test_database_url_round_trips_for_child_processes():
    for url in ("postgres://u:p%40ss@db.example:6543/stepmark", "postgres://postgres@/stepmark?host=/srv/var/pgdata"):
        entry = database_from_url(url)
        assert database_url(entry) == url
        assert database_from_url(database_url(entry)) == entry


def test_settings_refuse_a_sqlite_database_url():
    """The start-up itself fails, naming the variable, for the SQLite URL the embedded default once used."""
    env = {**os.environ, "DATABASE_URL": "sqlite:///var/stepmark.sqlite3"}
    finished = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert finished.returncode != 0
    assert "DATABASE_URL='sqlite:///var/stepmark.sqlite3': Stepmark runs on PostgreSQL only" in finished.stderr
