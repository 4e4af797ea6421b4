"""The core imports no plugin, and its modules import each other without cycles: every import
statement in evalsuite/ (module level and inside functions) is walked."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

PLUGINS = ("suites", "policies", "evalsuite_suites", "evalsuite_policies")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """Absolute names a file imports: ``from a.b import c`` counts as a.b.c, and as a.b too unless
    a.b.c is itself one of ``modules`` (importing a submodule is not importing the package's code)."""
    names: set[str] = set()
    package = _module(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            names |= subs
            if not subs <= modules:
                names.add(base)
    return names


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in (REPO / "evalsuite").rglob("*.py")}
    modules = frozenset(files)
    return {m: {n for n in _imports(p, modules) if n in files and n != m} for m, p in files.items()}


def test_the_core_imports_no_plugin():
    offenders = {(_module(p), n) for p in (REPO / "evalsuite").rglob("*.py") for n in _imports(p)
                 if n.split(".")[0] in PLUGINS}
    assert not offenders, sorted(offenders)


def test_no_import_cycles_in_the_core():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, " -> ".join(cycle)


def test_importing_and_drawing_leave_the_matplotlib_backend_alone():
    """A notebook's backend stays: no module of the core calls matplotlib.use or pyplot, at import
    or while drawing a report's figures."""
    import subprocess
    import sys

    code = ("import os, matplotlib; matplotlib.use('svg'); import pkgutil, importlib, evalsuite; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(evalsuite.__path__, 'evalsuite.') "
            "if not m.name.startswith(('evalsuite.runner.ray', 'evalsuite.__main__'))]; "
            "from evalsuite.plotting import subplots; fig, ax = subplots(figsize=(2, 2)); ax.plot([0, 1]); "
            "import io; fig.savefig(io.BytesIO(), format='png'); "
            "import sys; print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["svg", "False"], out.stdout
