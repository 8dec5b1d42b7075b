"""The apps stand in layers: each imports only from its own layer or lower ones, and no two apps
import each other.

    stepmark (settings, shared helpers), prm.core (the pure ML core)  <  annotation  <  prm  <  workers

Every import counts, also one inside a function: it is a dependency all the same. The modules are
parsed, not imported, so a violation is found however the import is reached.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"stepmark": 0, "prm.core": 0, "annotation": 1, "prm": 2, "workers": 3}


def _layer_of(module: str) -> str | None:
    """The layer name a dotted module belongs to (the longest prefix that names one)."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    return _parsed_imports(path.read_text(), module=_module_name(path), is_package=path.name == "__init__.py")


def _parsed_imports(text: str, *, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module or module.name) for every absolute or relative import in `text`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            # `from prm import core` imports prm.core: name each imported name under its module.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _app_modules() -> list[Path]:
    return sorted(p for top in ("stepmark", "annotation", "prm", "workers") for p in (ROOT / top).rglob("*.py"))


def _edges() -> list[tuple[str, str, str]]:
    """(from layer, to layer, 'file:line imports module') for each import that crosses layers."""
    edges = []
    for path in _app_modules():
        source = _layer_of(_module_name(path))
        for line, module in _imports(path):
            target = _layer_of(module)
            if target is not None and target != source:
                edges.append((source, target, f"{path.relative_to(ROOT)}:{line} imports {module}"))
    return edges


def test_no_import_goes_up_a_layer():
    upward = [where for source, target, where in _edges() if LAYERS[target] > LAYERS[source]]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_two_apps_import_each_other():
    graph: dict[str, set[str]] = {}
    for source, target, _ in _edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(app for app in graph if reaches(app, app, {app}))
    assert not cycles, f"apps in an import cycle: {cycles}"


def test_formats_import_no_service():
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "annotation" / "formats").rglob("*.py"))
        for line, module in _imports(path)
        if module == "annotation.services" or module.startswith("annotation.services.")
    ]
    assert not offending, "formats must not import services:\n" + "\n".join(offending)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from workers.models import Job\n", [(1, "workers.models.Job")]),
        ("def f():\n    import prm.models\n", [(2, "prm.models")]),
        ("from prm import core, models\n", [(1, "prm.core"), (1, "prm.models")]),
        ("from ..services.queue import x\n", [(1, "annotation.services.queue.x")]),
    ],
)
def test_the_parser_sees_every_kind_of_import(source, expected):
    found = _parsed_imports(source, module="annotation.api.views", is_package=False)
    assert found == expected
    assert [_layer_of(module) for _, module in found] == [_layer_of(module) for _, module in expected]
    assert _layer_of("prm.core.mc") == "prm.core" and _layer_of("prm.models") == "prm"
    assert _layer_of("prmx") is None and _layer_of("torch") is None
