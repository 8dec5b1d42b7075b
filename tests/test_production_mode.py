"""Production mode (STEPMARK_PRODUCTION=true), issue 15 item 5: `check --deploy` is clean, the
development key and the `testserver` host are refused, and responses carry the security headers.

Each case is a real `manage.py` process with production's environment.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from django.conf import settings

KEY = secrets.token_urlsafe(50)
PRODUCTION_ENV = {
    "STEPMARK_PRODUCTION": "true",
    "SECRET_KEY": KEY,
    "ALLOWED_HOSTS": "stepmark.example",
    "CSRF_TRUSTED_ORIGINS": "https://stepmark.example",
    "DATABASE_URL": "postgres://stepmark@127.0.0.1:5432/stepmark",
    "DEBUG": "",
}


def manage(*args: str, env: dict | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    base = {name: value for name, value in os.environ.items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"}  # set by browser tests
    return subprocess.run(
        command, cwd=settings.BASE_DIR, env={**base, **PRODUCTION_ENV, **(env or {})},
        capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_in_production_mode():
    finished = manage("check", "--deploy", "--fail-level", "INFO")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "System check identified no issues" in finished.stdout


def test_check_deploy_does_find_issues_in_development_mode():
    """The control: the same check, development settings, is not clean (so the test above can fail)."""
    finished = manage("check", "--deploy", "--fail-level", "WARNING", env={"STEPMARK_PRODUCTION": "false"})
    assert finished.returncode != 0 and "security.W004" in finished.stderr  # no HSTS


def test_the_development_key_and_weak_keys_are_refused():
    for key in ("dev-insecure-stepmark-key", "short-key", "a" * 60):
        finished = manage("check", env={"SECRET_KEY": key})
        assert finished.returncode != 0
        assert "SECRET_KEY: production needs its own random key" in finished.stderr
        assert finished.stderr.count("Traceback") <= 1


def test_the_testserver_host_is_refused():
    for hosts in ("stepmark.example,testserver", "*"):
        finished = manage("check", env={"ALLOWED_HOSTS": hosts})
        assert finished.returncode != 0 and "ALLOWED_HOSTS" in finished.stderr


PROBE = """
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepmark.settings")
django.setup()
from django.test import Client
client = Client(HTTP_HOST="stepmark.example")
plain = client.get("/accounts/login/")
print("plain", plain.status_code, plain.get("Location"))
secure = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
print("secure", secure.status_code)
print("hsts", secure.get("Strict-Transport-Security"))
print("csp", secure.get("Content-Security-Policy"))
print("cookie", secure.cookies["csrftoken"]["secure"])
"""


def test_production_responses_redirect_to_https_and_carry_the_headers():
    finished = manage(code=PROBE)
    assert finished.returncode == 0, finished.stderr
    lines = dict(line.split(" ", 1) for line in finished.stdout.splitlines())
    assert lines["plain"] == "301 https://stepmark.example/accounts/login/"
    assert lines["secure"] == "200"
    assert lines["hsts"].startswith("max-age=31536000") and "includeSubDomains" in lines["hsts"]
    assert "script-src 'self'" in lines["csp"] and "frame-ancestors 'none'" in lines["csp"]
    assert lines["cookie"] == "True"
