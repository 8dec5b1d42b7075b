"""The ML core (prm/core/) imports nothing from Django or the apps, directly or through another module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "prm" / "core"

# Run in a fresh interpreter: this process has Django loaded already. The finder refuses the web
# framework and every app package, so an import of any of them from the core fails loudly.
PROBE = """
import importlib, importlib.abc, sys
FORBIDDEN = ("django", "rest_framework", "celery", "annotation", "workers", "stepmark")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in FORBIDDEN or (name.startswith("prm.") and not name.startswith("prm.core")):
            raise ImportError(f"the ML core imported {name}")
        return None
sys.meta_path.insert(0, Refuse())
for module in sys.argv[1:]:
    importlib.import_module(module)
print("pure", len(sys.argv) - 1)
"""


def test_core_modules_exist():
    names = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    for expected in ("answers", "conversation", "mc", "merge", "metrics", "prompts", "scoring", "training"):
        assert expected in names


def test_the_core_imports_no_django_and_no_app():
    modules = ["prm.core"] + [f"prm.core.{p.stem}" for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        cwd=CORE.parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(CORE.parent.parent)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"pure {len(modules)}"


def test_the_probe_catches_a_django_import(tmp_path):
    """The probe itself can fail: a module that imports Django is refused."""
    (tmp_path / "tainted.py").write_text("import django\n")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "tainted"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "the ML core imported django" in result.stderr
