"""The annotation load benchmark runs end to end: gunicorn on PostgreSQL, clients, exactly-once check.

A short run with a few annotators (the real figures come from the README's command); the check
that every acknowledged label is stored exactly once is the benchmark's own and must pass.
"""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_a_short_load_run_loses_nothing():
    url = urlsplit(os.environ["DATABASE_URL"])
    database_url = url._replace(path=url.path + "_load_smoke").geturl()  # its own database, beside the tests'
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [
        sys.executable, "benchmarks/annotation_load.py",
        "--seconds", "4", "--annotators", "6", "--solutions", "60", "--steps", "3", "--think-ms", "20",
        "--workers", "3",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    figures = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line and line[0].isalpha())
    assert int(figures["acknowledged labels"]) > 20, output
    assert figures["acknowledged labels"] == figures["stored labels"], output
    for check in ("lost", "wrong value", "duplicated", "unexplained", "history mismatches"):
        assert figures[check] == "0", f"{check}: {output}"
    assert "label save" in result.stdout and "errors: 0" in result.stdout
